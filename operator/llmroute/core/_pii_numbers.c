/* The numeric types' driver, compiled: pii_numbers.numbers_py step for step.
 *
 * numbers(text, classes, key, headers, ctx, hooks) runs the plan (plan_items) and, for each item, what numbers_py
 * does with it: the context lookups and the decisions on their answers for cards, SSNs, IPv4 addresses and national
 * phone numbers are done here; what validates with a library or is rare calls the Python function numbers_py calls
 * (hooks: the phone numbering plans, international numbers, phone_at's cut, IBANs, IPv6). It returns the hits in
 * numbers_py's order, as (type, start, end, confidence) tuples made of the same values.
 */
#include "_pii_native.h"

static int bad_hooks(void) {
    PyErr_SetString(PyExc_TypeError,
                    "hooks: (constants, units, cues, words, names, label_cue, validated, valid_in, iban_countries, "
                    "iban_bbans, ipv6_at), as pii_numbers._HOOKS");
    return -1;
}

/* pii_numbers._HOOKS into *s (borrowed references, checked for their shape); -1 with an exception set. */
int read_hooks(PyObject *hooks, Scan *s) {
    PyObject *consts, *tables;
    if (!PyTuple_Check(hooks)
        || !PyArg_ParseTuple(hooks, "OO!O!O!O!OOOUO!O", &consts, &PyTuple_Type, &s->units, &PyTuple_Type, &s->cues,
                             &PyTuple_Type, &tables, &PyTuple_Type, &s->names, &s->label_cue, &s->validated,
                             &s->valid_in, &s->iban_countries, &PyTuple_Type, &s->iban_bbans, &s->ipv6_at)) {
        PyErr_Clear();
        return bad_hooks();
    }
    if (PyTuple_GET_SIZE(s->cues) != 4 || PyTuple_GET_SIZE(tables) != 4 || PyTuple_GET_SIZE(s->names) != 5
        || PyTuple_GET_SIZE(s->iban_bbans) * 2 != PyUnicode_GET_LENGTH(s->iban_countries))
        return bad_hooks();
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(s->iban_bbans); i++)
        if (!PyUnicode_Check(PyTuple_GET_ITEM(s->iban_bbans, i))) return bad_hooks();
    if (!PyUnicode_Check(PyTuple_GET_ITEM(s->names, CUES_IBAN))) return bad_hooks();
    for (int i = 0; i < 4; i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(s->names, i))) return bad_hooks();
        if ((s->words[i] = words_of(PyTuple_GET_ITEM(tables, i))) == NULL) return -1;
    }
    return read_consts(consts, &s->consts);
}

/* The arguments of numbers() (text, classes, key, headers, ctx, hooks) into *s, whose lazy part is *lazy (the
 * Context and its headers, borrowed); with `start`, also lookup()'s (start, end, which) after them. -1 with an
 * exception set. */
int read_scan(PyObject *args, Scan *s, Lazy *lazy, Py_ssize_t *start, Py_ssize_t *end, int *which) {
    PyObject *classes, *hooks;
    *lazy = (Lazy){NULL, NULL, NULL};
    s->lazy = lazy;
    int ok = start == NULL
                 ? PyArg_ParseTuple(args, "UO!UO!OO!", &s->text, &PyBytes_Type, &classes, &s->key, &PyDict_Type,
                                    &lazy->headers, &lazy->ctx, &PyTuple_Type, &hooks)
                 : PyArg_ParseTuple(args, "UO!UO!OO!nni", &s->text, &PyBytes_Type, &classes, &s->key, &PyDict_Type,
                                    &lazy->headers, &lazy->ctx, &PyTuple_Type, &hooks, start, end, which);
    if (!ok || text_of(s->text, classes, &s->t) < 0 || read_hooks(hooks, s) < 0) return -1;
    s->ascii = PyUnicode_IS_ASCII(s->text);
    if (start != NULL && !(0 <= *start && *start <= *end && *end <= s->t.n && 0 <= *which && *which < 4)) {
        PyErr_SetString(PyExc_ValueError, "a span of the text and a cues index (0-3) are needed");
        return -1;
    }
    return 0;
}

/* Append (names[which], a, b, conf) to `hits`. */
static int hit(PyObject *hits, const Scan *s, int which, Py_ssize_t a, Py_ssize_t b, double conf) {
    PyObject *h = Py_BuildValue("(Onnd)", PyTuple_GET_ITEM(s->names, which), a, b, conf);
    int r = h == NULL ? -1 : PyList_Append(hits, h);
    Py_XDECREF(h);
    return r;
}

/* Append every item of the iterable `found` (steals it: what a Python hook returned) to hits. */
int extend_hits(PyObject *hits, PyObject *found) {
    if (found == NULL) return -1;
    PyObject *iter = PyObject_GetIter(found), *h;
    Py_DECREF(found);
    if (iter == NULL) return -1;
    int r = 0;
    while (r == 0 && (h = PyIter_Next(iter)) != NULL) {
        r = PyList_Append(hits, h);
        Py_DECREF(h);
    }
    Py_DECREF(iter);
    return r < 0 || PyErr_Occurred() ? -1 : 0;
}

/* The country of the two capitals at a among hooks' iban_countries (two characters each): its index there, or -1
 * (iban_at finds no IBAN in a country that has none). */
static Py_ssize_t iban_country(const Scan *s, Py_ssize_t a) {
    Py_UCS4 x = at(&s->t, a), y = at(&s->t, a + 1);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s->iban_countries);
    for (Py_ssize_t i = 0; i + 1 < n; i += 2)
        if (PyUnicode_READ_CHAR(s->iban_countries, i) == x && PyUnicode_READ_CHAR(s->iban_countries, i + 1) == y)
            return i / 2;
    return -1;
}

static inline int upper_or_digit(Py_UCS4 ch) { return is_digit(ch) || is_upper(ch); }

/* pii_numbers.iban_at(text, a) for a country with IBANs, whose BBAN is `bban` (one class letter per character, as
 * pii_numbers.IBAN_BBANS writes it: 'n' a digit, 'a' a capital, 'c' either): the IBAN's end, or 0 if none is there.
 *   - not after an ASCII letter, digit or '_';
 *   - _iban_span: [0-9A-Z](?: ?[0-9A-Z]){length-1}(?![A-Za-z0-9]) - each character after the first may follow one
 *     space (a space not followed by one ends the match: one path), and no ASCII letter or digit after the last;
 *   - the BBAN's classes, and mod 97 of the number the characters make with the first four moved to the end and
 *     each letter read as 10-35 (int(...) % 97 there) is 1. */
static Py_ssize_t iban_end(const Scan *s, Py_ssize_t a, PyObject *bban) {
    const Text *t = &s->t;
    if (a > 0 && word_ascii(at(t, a - 1))) return 0;
    Py_ssize_t length = 4 + PyUnicode_GET_LENGTH(bban), i = a, k = 0;
    Py_UCS4 chars[64];
    if (length > (Py_ssize_t)(sizeof chars / sizeof *chars)) return 0; /* (the longest IBAN has 34) */
    for (; k < length; k++) {
        if (k > 0 && i + 1 < t->n && at(t, i) == ' ' && upper_or_digit(at(t, i + 1))) i++;
        if (i >= t->n || !upper_or_digit(at(t, i))) return 0;
        chars[k] = at(t, i++);
    }
    if (i < t->n && ascii_alnum(at(t, i))) return 0;
    for (k = 4; k < length; k++) {
        Py_UCS4 want = PyUnicode_READ_CHAR(bban, k - 4), ch = chars[k];
        if ((want == 'n' && !is_digit(ch)) || (want == 'a' && !is_upper(ch))) return 0;
    }
    long r = 0;
    for (k = 0; k < length; k++) {
        Py_UCS4 ch = chars[(k + 4) % length];
        r = is_digit(ch) ? (r * 10 + (long)(ch - '0')) % 97 : (r * 100 + (long)(ch - 'A' + 10)) % 97;
    }
    return r == 1 ? i : 0;
}

#define PHONE_SCAN_MAX 4096 /* pii_context._PHONE_SCAN_MAX */

/* Context.phone_may_be_positive: false only when the text and its key are ASCII, at most PHONE_SCAN_MAX characters
 * long, and hold no positive phone word (Cues.positive; read lowercased as the characters come, which on ASCII is
 * what the Python scan of the lowercased text sees). */
static int may_be_positive(const Scan *s) {
    const Words *words = s->words[CUES_PHONE];
    if (!s->ascii || s->t.n > PHONE_SCAN_MAX || any_positive(&s->t, words)) return 1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s->key);
    if (n == 0) return 0;
    if (!PyUnicode_IS_ASCII(s->key) || n > PHONE_SCAN_MAX) return 1;
    Text key = {NULL, n, PyUnicode_KIND(s->key), PyUnicode_DATA(s->key)};
    return any_positive(&key, words);
}

/* pii_numbers._national: the confidence that the national candidate a:b of `digits` digits is a phone number (0: it
 * is not); -1 with an exception set. `positive`: may_be_positive's answer once asked (-1 before). */
static double national(const Scan *s, Py_ssize_t a, Py_ssize_t b, Py_ssize_t digits, int *positive) {
    int nanp = nanp_full(&s->t, a, b), trunk = 8 <= digits && digits <= 12 && trunk_full(&s->t, a, b);
    if (!(nanp || trunk)) { /* only a positive cue makes a phone of another shape: is there one in the text? */
        if (*positive < 0) *positive = may_be_positive(s);
        if (!*positive) return 0.0;
    }
    int cue = lookup(s, a, b, CUES_PHONE);
    if (cue < 0) return -1.0;
    if (cue == CUE_NEGATIVE || (!nanp && !trunk && cue != CUE_POSITIVE)) return 0.0; /* (_validated: 0 then) */
    PyObject *candidate = PyUnicode_Substring(s->text, a, b);
    if (candidate == NULL) return -1.0;
    PyObject *found = PyObject_CallFunction(s->validated, "Oiii", candidate, nanp, trunk, cue == CUE_POSITIVE);
    Py_DECREF(candidate);
    if (found == NULL) return -1.0;
    double conf = PyFloat_AsDouble(found);
    Py_DECREF(found);
    return conf == -1.0 && PyErr_Occurred() ? -1.0 : conf;
}

/* pii_numbers.valid_in(number, None): the ASCII text[a:b] as an international number ("+" and the rest after a
 * leading "00"; "(+44) 20 ..." without its "(" and first ")") is valid. 1, 0, or -1 with an exception set. */
static int valid_international(const Scan *s, Py_ssize_t a, Py_ssize_t b) {
    char buf[64];
    Py_ssize_t len = 0, i = a;
    Py_UCS4 first = at(&s->t, a);
    int drop_paren = first == '(';
    if (b - a + 1 > (Py_ssize_t)sizeof buf) return 0; /* (a cluster of at most 17 digits is never this long) */
    if (first == '0') { /* "00..." -> "+..." */
        buf[len++] = '+';
        i = a + 2;
    } else if (drop_paren) { /* "(+" -> "+", then the first ")" goes */
        buf[len++] = '+';
        i = a + 2;
    }
    for (; i < b; i++) {
        Py_UCS4 ch = at(&s->t, i);
        if (ch >= 128) return 0; /* (a cluster is ASCII) */
        if (drop_paren && ch == ')') {
            drop_paren = 0;
            continue;
        }
        buf[len++] = (char)ch;
    }
    PyObject *found = PyObject_CallFunction(s->valid_in, "s#O", buf, len, Py_None);
    int valid = found == NULL ? -1 : PyObject_IsTrue(found);
    Py_XDECREF(found);
    return valid;
}

/* pii_numbers._phone: the confidence that text[a:b] is a phone number (0: not); -1 with an exception set. */
static double phone(const Scan *s, Py_ssize_t a, Py_ssize_t b, int *positive) {
    const Text *t = &s->t;
    const unsigned char *c = t->c;
    Py_ssize_t digits = count_byte(c, a, b, '0');
    if (digits < 7 || digits > 17 || has_byte(c, a, b, '/') || count_byte(c, a, b, '(') != count_byte(c, a, b, ')'))
        return 0.0;
    Py_UCS4 first = at(t, a), second = b - a >= 2 ? at(t, a + 1) : 0;
    if (first == '+' || (first == '0' && second == '0') || (first == '(' && second == '+')) { /* international */
        if (digits > 16 - (first != '0')) return 0.0;
        int cue = lookup(s, a, b, CUES_PHONE);
        if (cue < 0) return -1.0;
        if (cue == CUE_NEGATIVE) return 0.0;
        int valid = valid_international(s, a, b);
        return valid < 0 ? -1.0 : !valid ? 0.0 : cue == CUE_POSITIVE ? 0.97 : 0.9;
    }
    if (digits > 12 || (has_byte(c, a, b, '-') && (shaped(t, a, b, "ddd-dd-dddd") || isbn_full(t, a, b))))
        return 0.0; /* (a national number holding a date never gets here: the plan looks for one first) */
    if (has_byte(c, a, b, '.') && !dots_full(t, a, b)) return 0.0;
    return national(s, a, b, digits, positive);
}

static inline int phone_cut(Py_UCS4 ch) { /* what phone_at strips after the digits: " -.()/\u00a0" */
    return ch == ' ' || ch == '-' || ch == '.' || ch == '(' || ch == ')' || ch == '/' || ch == 0xA0;
}

/* pii_numbers.phone_at: the phone number in the digit cluster a:b (with a '+', '(' or '(+' before it), if it is one,
 * appended to hits; -1 with an exception set. */
static int phone_at(PyObject *hits, const Scan *s, Py_ssize_t a, Py_ssize_t b, int *positive) {
    const Text *t = &s->t;
    Py_ssize_t n = t->n;
    if (a > 0 && (at(t, a - 1) == '+' || at(t, a - 1) == '(')) {
        a--;
        if (a > 0 && at(t, a - 1) == '(' && at(t, a) == '+') a--; /* "(+44) 20 7946 0958" */
    }
    if (a > 0 && (phone_before(at(t, a - 1)) || (a >= 2 && at(t, a - 2) == ':' && at(t, a - 1) == ':')))
        return 0; /* "tel:+1..." is a phone, "arn:aws:iam::004751573971" an account */
    if (b < n && (word_ascii(at(t, b))
                  || (at(t, b) == '-' && b + 1 < n && (at(t, b + 1) == 'X' || at(t, b + 1) == 'x'))))
        return 0; /* a longer token, or an extension ("-x123") */
    for (int k = 0; k < 2; k++) {
        double conf = phone(s, a, b, positive);
        if (conf < 0) return -1;
        if (conf > 0) return hit(hits, s, CUES_PHONE, a, b, conf);
        if (!has_byte(t->c, b - 4 > a ? b - 4 : a, b, ' ')) return 0;
        Py_ssize_t cut = b;
        while (cut > a && is_digit(at(t, cut - 1))) cut--;
        while (cut > a && phone_cut(at(t, cut - 1))) cut--;
        /* only "415 555 0134 2 items": a short group after a space, not a longer number's tail */
        if (!(0 < b - cut && b - cut <= 3) || cut == a || !(at(t, cut - 1) == ' ' || at(t, cut) == ' ')) return 0;
        b = cut;
    }
    return 0;
}

/* What numbers_py yields for the item at *i (it advances *i past the items an IBAN's hit skips). */
static int item(PyObject *hits, const Scan *s, const Items *items, Py_ssize_t *i, int *positive) {
    const Item *it = &items->items[*i];
    Py_ssize_t a = it->a, b = it->b;
    int cue;
    switch (it->kind) {
    case K_NATIONAL: {
        double conf = national(s, a, b, it->c, positive);
        return conf < 0 ? -1 : conf > 0 ? hit(hits, s, CUES_PHONE, a, b, conf) : 0;
    }
    case K_IPV4: /* c: both first octets below 10 (only a positive cue makes that an address) */
        if ((cue = lookup(s, a, b, CUES_IP)) < 0) return -1;
        if (cue == CUE_NEGATIVE || (it->c && cue != CUE_POSITIVE)) return 0;
        return hit(hits, s, CUES_IP, a, b, cue == CUE_POSITIVE ? 0.95 : 0.85);
    case K_SSN: /* c: written with dashes (enough without a cue) */
        if ((cue = lookup(s, a, b, CUES_SSN)) < 0) return -1;
        if (cue == CUE_POSITIVE) return hit(hits, s, CUES_SSN, a, b, 0.95);
        return cue == CUE_NONE && it->c ? hit(hits, s, CUES_SSN, a, b, 0.8) : 0;
    case K_CARD: /* c: printed in groups */
        if ((cue = lookup(s, a, b, CUES_CARD)) < 0) return -1;
        if (cue == CUE_NEGATIVE) return 0;
        return hit(hits, s, CUES_CARD, a, b, cue == CUE_POSITIVE ? 0.99 : it->c ? 0.9 : 0.8);
    case K_INTL: {
        double conf = phone(s, a, b, positive);
        return conf < 0 ? -1 : conf > 0 ? hit(hits, s, CUES_PHONE, a, b, conf) : 0;
    }
    case K_PHONE_AT:
        return phone_at(hits, s, a, b, positive);
    case K_IBAN: {
        Py_ssize_t country = iban_country(s, a), end;
        if (country < 0 || !(end = iban_end(s, a, PyTuple_GET_ITEM(s->iban_bbans, country)))) return 0;
        *i += b < items->len - 1 - *i ? b : items->len - 1 - *i; /* the rest of the cluster is not looked at (an */
        return hit(hits, s, CUES_IBAN, a, end, 0.97);              /* IBAN holds no other number) */
    }
    default: /* K_IPV6 */
        return extend_hits(hits, PyObject_CallFunction(s->ipv6_at, "Onn", s->text, a, b));
    }
}

/* numbers_py's hits for the text of *s, appended to hits; -1 with an exception set. */
int numbers_into(PyObject *hits, const Scan *s) {
    Items items = {NULL, 0, 0};
    int r = plan_items(&s->t, &items, &s->consts);
    int positive = -1; /* Context.phone_may_be_positive(), asked once when a national number needs it */
    for (Py_ssize_t i = 0; r == 0 && i < items.len; i++) r = item(hits, s, &items, &i, &positive);
    PyMem_Free(items.items);
    return r < 0 ? -1 : 0;
}

/* numbers(text, classes, key, headers, ctx, hooks) -> [(type, start, end, confidence), ...]: numbers_py's hits. */
PyObject *py_numbers(PyObject *self, PyObject *args) {
    Scan s;
    Lazy lazy;
    if (read_scan(args, &s, &lazy, NULL, NULL, NULL) < 0) return NULL;
    PyObject *hits = PyList_New(0);
    if (hits != NULL && numbers_into(hits, &s) < 0) Py_CLEAR(hits);
    return hits;
}
