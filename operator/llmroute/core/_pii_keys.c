#include "_pii_native.h"

/* --- API keys: the tokens long enough to be one ------------------------------------------------------------------ */

/* long_tokens(text, tokens, first) -> [(start, end), ...]: the runs of 16 or more token bytes ('t' in
 * pii_context.Context.tokens), as pii_keys.keys walks them with tokens.find; with `first` (a str), only the runs whose
 * first character is one of its characters (what pii_keys.keys looks at when no key-like name is in the text). */
PyObject *py_long_tokens(PyObject *self, PyObject *args) {
    PyObject *text, *tokens, *first;
    if (!PyArg_ParseTuple(args, "UO!O", &text, &PyBytes_Type, &tokens, &first)) return NULL;
    if (first != Py_None && !PyUnicode_Check(first)) {
        PyErr_SetString(PyExc_TypeError, "first: a str or None");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(tokens);
    if (PyUnicode_GET_LENGTH(text) != n) {
        PyErr_SetString(PyExc_ValueError, "tokens must hold one byte per character of text");
        return NULL;
    }
    const unsigned char *t = (const unsigned char *)PyBytes_AS_STRING(tokens);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    PyObject *list = PyList_New(0);
    for (Py_ssize_t i = 0; list != NULL && i < n;) {
        if (t[i] != 't') {
            i++;
            continue;
        }
        Py_ssize_t j = i;
        while (j < n && t[j] == 't') j++;
        if (j - i >= 16) {
            int wanted = 1;
            if (first != Py_None) {
                Py_UCS4 ch = PyUnicode_READ(kind, data, i);
                wanted = PyUnicode_FindChar(first, ch, 0, PyUnicode_GET_LENGTH(first), 1) >= 0;
            }
            if (wanted) {
                PyObject *span = Py_BuildValue("(nn)", i, j);
                if (span == NULL || PyList_Append(list, span) < 0) Py_CLEAR(list);
                Py_XDECREF(span);
            }
        }
        i = j;
    }
    return list;
}

/* --- API keys: which long tokens are keys (pii_keys.keys_py's walk over them) ------------------------------------- */

/* Character classes of _SHAPED's alphabets (ASCII only: the regex classes hold no other character). */
static inline int alnum_u(Py_UCS4 ch) { return ascii_alnum(ch) || ch == '_'; }             /* [A-Za-z0-9_] */
static inline int alnum_ud(Py_UCS4 ch) { return ascii_alnum(ch) || ch == '_' || ch == '-'; } /* [A-Za-z0-9_\-] */
static inline int alnum_d(Py_UCS4 ch) { return ascii_alnum(ch) || ch == '-'; }               /* [A-Za-z0-9\-] */
static inline int upper_digit(Py_UCS4 ch) { return is_digit(ch) || (ch >= 'A' && ch <= 'Z'); } /* [A-Z0-9] */

typedef int (*CharClass)(Py_UCS4);

static inline int one_of(Py_UCS4 ch, const char *set) { return ch && ch < 128 && strchr(set, (int)ch) != NULL; }

/* How many characters of `cls` follow from i, at most `most` (-1: no limit). */
static Py_ssize_t run(const Text *t, Py_ssize_t i, CharClass cls, Py_ssize_t most) {
    Py_ssize_t k = 0;
    while (i + k < t->n && (most < 0 || k < most) && cls(at(t, i + k))) k++;
    return k;
}

/* text[i:] starts with the ASCII `lit`. */
static int starts(const Text *t, Py_ssize_t i, const char *lit) {
    for (Py_ssize_t k = 0; lit[k]; k++)
        if (i + k >= t->n || at(t, i + k) != (Py_UCS4)(unsigned char)lit[k]) return 0;
    return 1;
}

/* `lit`, then `cls` at least `least` times and at most `most` (-1: no limit), greedy: the match's end, or -1. */
static Py_ssize_t prefixed(const Text *t, Py_ssize_t i, const char *lit, CharClass cls, Py_ssize_t least,
                           Py_ssize_t most) {
    if (!starts(t, i, lit)) return -1;
    Py_ssize_t p = i + (Py_ssize_t)strlen(lit), k = run(t, p, cls, most);
    return k >= least ? p + k : -1;
}

/* [sr]k_(?:live|test)_[0-9A-Za-z]{16,} at i: its end, or -1. */
static Py_ssize_t stripe_key(const Text *t, Py_ssize_t i) {
    if (!(starts(t, i + 1, "k_live_") || starts(t, i + 1, "k_test_"))) return -1;
    Py_ssize_t k = run(t, i + 8, ascii_alnum, -1);
    return k >= 16 ? i + 8 + k : -1;
}

/* pii_keys._SHAPED.match(text, i), but for its private-key branch (which no long token starts: "-----BEGIN" is
 * followed by a space): the end of the vendor-shaped key at i, or -1. Every branch starts with its own literal (no two
 * can match at one position), and each run of a class is taken greedily where nothing after it could be that class,
 * so one path decides:
 *   sk-(?:proj-|ant-(?:api|admin)[0-9]{2}-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}  (the optional part is made of the
 *      run's class: the match is the run, when it is 20 or longer, with or without it)
 *   (?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}   gh[pousr]_[A-Za-z0-9]{36,251}
 *   github_pat_[A-Za-z0-9_]{22,255}   xox[abposre]-[A-Za-z0-9\-]{10,}   AIza[0-9A-Za-z_\-]{35}
 *   [sr]k_(?:live|test)_[0-9A-Za-z]{16,}   hf_[A-Za-z0-9]{30,}   glpat-[A-Za-z0-9_\-]{20,}   npm_[A-Za-z0-9]{36}
 *   SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}
 *   eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{16,}  (no '.' in the class: each run ends at one) */
static Py_ssize_t shaped_key(const Text *t, Py_ssize_t i) {
    static const char *aws[] = {"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"};
    if (i >= t->n) return -1;
    switch (at(t, i)) {
    case 's':
        if (starts(t, i, "sk-")) return prefixed(t, i, "sk-", alnum_ud, 20, -1);
        return stripe_key(t, i);
    case 'r':
        return stripe_key(t, i);
    case 'A':
        for (size_t a = 0; a < sizeof aws / sizeof *aws; a++)
            if (starts(t, i, aws[a])) {
                Py_ssize_t k = run(t, i + 4, upper_digit, 16);
                return k == 16 ? i + 20 : -1;
            }
        return prefixed(t, i, "AIza", alnum_ud, 35, 35);
    case 'g':
        if (i + 3 < t->n && at(t, i + 1) == 'h' && one_of(at(t, i + 2), "pousr") && at(t, i + 3) == '_') {
            Py_ssize_t k = run(t, i + 4, ascii_alnum, 251);
            return k >= 36 ? i + 4 + k : -1;
        }
        if (starts(t, i, "github_pat_")) return prefixed(t, i, "github_pat_", alnum_u, 22, 255);
        return prefixed(t, i, "glpat-", alnum_ud, 20, -1);
    case 'x':
        if (starts(t, i, "xox") && i + 4 < t->n && one_of(at(t, i + 3), "abposre") && at(t, i + 4) == '-') {
            Py_ssize_t k = run(t, i + 5, alnum_d, -1);
            return k >= 10 ? i + 5 + k : -1;
        }
        return -1;
    case 'h':
        return prefixed(t, i, "hf_", ascii_alnum, 30, -1);
    case 'n':
        return prefixed(t, i, "npm_", ascii_alnum, 36, 36);
    case 'S': {
        Py_ssize_t p = prefixed(t, i, "SG.", alnum_ud, 22, 22);
        return p >= 0 ? prefixed(t, p, ".", alnum_ud, 43, 43) : -1;
    }
    case 'e': {
        Py_ssize_t p = prefixed(t, i, "eyJ", alnum_ud, 8, -1);
        p = p >= 0 ? prefixed(t, p, ".eyJ", alnum_ud, 8, -1) : -1;
        return p >= 0 ? prefixed(t, p, ".", alnum_ud, 16, -1) : -1;
    }
    default:
        return -1;
    }
}

/* The character as case-insensitive matching compares it with ASCII letters: ASCII lowercased, and the four other
 * characters Python's re matches with one (dotted and dotless I, long s, Kelvin sign; a test checks there are no
 * more). Anything else is returned as it is (it matches no ASCII letter). */
static inline Py_UCS4 fold(Py_UCS4 ch) {
    if (ch < 128) return (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch;
    switch (ch) {
    case 0x130: case 0x131: return 'i';
    case 0x17F: return 's';
    case 0x212A: return 'k';
    default: return ch;
    }
}

/* text[a:b] holds one of `words` (ASCII, lowercase, NULL-terminated), its characters read through fold: one pass,
 * each position compared only with the words starting with its character (most start none). */
static int holds_any(const Text *t, Py_ssize_t a, Py_ssize_t b, const char *const *words) {
    unsigned char first[128] = {0};
    for (const char *const *w = words; *w; w++) {
        first[(unsigned char)(*w)[0]] = 1;
        if ((*w)[0] >= 'a' && (*w)[0] <= 'z') first[(unsigned char)(*w)[0] - 32] = 1; /* (its capital folds to it) */
    }
    if (t->kind == PyUnicode_1BYTE_KIND) { /* (most texts: skip the positions no word starts at byte by byte) */
        const unsigned char *d = t->data;
        while (a < b && d[a] < 128 && !first[d[a]]) a++;
    }
    for (Py_ssize_t i = a; i < b; i++) {
        Py_UCS4 f = fold(at(t, i));
        if (f >= 128 || !first[f]) continue;
        for (const char *const *w = words; *w; w++) {
            if ((Py_UCS4)(unsigned char)(*w)[0] != f) continue;
            Py_ssize_t x = 1;
            while ((*w)[x] && i + x < b && fold(at(t, i + x)) == (Py_UCS4)(unsigned char)(*w)[x]) x++;
            if (!(*w)[x]) return 1;
        }
    }
    return 0;
}

/* pii_keys._ASSIGNED_WORDS: what every name _ASSIGNED accepts holds, lowercased. */
static const char *const ASSIGNED_WORDS[] = {"key", "secret", "token", "auth", "bearer", "credential", "passw", "sig",
                                             NULL};
/* pii_keys._PLACEHOLDER's words (searched in the value lowercased). */
static const char *const PLACEHOLDER[] = {"xxxx", "...", "example", "your", "here", "placeholder", "dummy", "fake",
                                          "redacted", "changeme", "sample", "<", ">", "${", "{{", "***", NULL};

/* pii_keys._random_looking(text[a:b], shaped) for an ASCII value: 1 or 0, or 2 where it takes the entropy (rare:
 * a character is more than an eighth of the value), which the Python function then computes (its float sum). */
static int random_looking(const Text *t, Py_ssize_t a, Py_ssize_t b, int shaped) {
    Py_ssize_t n = b - a, counts[128] = {0}, most = 0;
    int letter = 0, digit = 0, upper = 0, lower = 0, distinct = 0;
    if (n < 16) return 0;
    for (Py_ssize_t i = a; i < b; i++) {
        Py_UCS4 ch = at(t, i);
        if (ch >= 128) return 2; /* (values are token characters: ASCII; Python decides otherwise) */
        upper |= ch >= 'A' && ch <= 'Z';
        lower |= ch >= 'a' && ch <= 'z';
        digit |= is_digit(ch);
        distinct += counts[ch]++ == 0;
        if (counts[ch] > most) most = counts[ch];
    }
    letter = upper || lower;
    if (!letter) return 0;
    if (!digit && !(shaped && (starts(t, a, "AKIA") || starts(t, a, "ASIA") || (upper && lower)))) return 0;
    if (distinct < 10) return 0;
    return most * 8 <= n ? 1 : 2; /* no character more than an eighth: entropy >= 3 */
}

/* pii_keys._REFERENCE.fullmatch(text[a:b]): [A-Za-z_$][A-Za-z0-9_]*(?:\.[A-Za-z_$][A-Za-z0-9_]*)+ - dotted names,
 * two or more ('.' is in neither class: each name ends at one). */
static int reference(const Text *t, Py_ssize_t a, Py_ssize_t b) {
    int names = 0;
    for (Py_ssize_t i = a; i <= b; names++) {
        Py_UCS4 first = i < b ? at(t, i) : 0;
        if (!((first >= 'A' && first <= 'Z') || (first >= 'a' && first <= 'z') || first == '_' || first == '$'))
            return 0;
        for (i++; i < b && alnum_u(at(t, i)); i++) {}
        if (i == b) return names + 1 >= 2;
        if (at(t, i) != '.') return 0;
        i++;
    }
    return 0;
}

#define ASSIGNED_REACH 56 /* pii_keys._ASSIGNED_REACH */

/* Hooks' Python functions: _assigned(text, lo, start) and _random_looking(value, shaped). */
typedef struct {
    PyObject *text, *assigned, *random_looking;
} KeyHooks;

static int call_bool(PyObject *fn, PyObject *args) {
    if (args == NULL) return -1;
    PyObject *found = PyObject_Call(fn, args, NULL);
    Py_DECREF(args);
    int r = found == NULL ? -1 : PyObject_IsTrue(found);
    Py_XDECREF(found);
    return r;
}

/* random_looking, the Python function deciding where it needs the entropy. */
static int random_value(const Text *t, const KeyHooks *h, Py_ssize_t a, Py_ssize_t b, int shaped) {
    int r = random_looking(t, a, b, shaped);
    if (r != 2) return r;
    PyObject *value = PyUnicode_Substring(h->text, a, b);
    return value == NULL ? -1 : call_bool(h->random_looking, Py_BuildValue("(NO)", value, shaped ? Py_True : Py_False));
}

/* pii_keys._assigned(text, lo, a): a key-like name is assigned the value at a. Where text[lo - 1:a] is ASCII, the
 * Python function is given it lowercased (its `lower` argument: _ASSIGNED_ASCII, a plain search, instead of the
 * case-insensitive _ASSIGNED), with the character before lo that its look-behind reads. */
static int assigned(const Text *t, const KeyHooks *h, Py_ssize_t lo, Py_ssize_t a) {
    Py_ssize_t from = lo > 0 ? lo - 1 : 0;
    if (!all_ascii(t, from, a)) return call_bool(h->assigned, Py_BuildValue("(Onn)", h->text, lo, a));
    PyObject *lower = PyUnicode_New(a - from, 127);
    if (lower == NULL) return -1;
    Py_UCS1 *d = PyUnicode_1BYTE_DATA(lower);
    for (Py_ssize_t i = from; i < a; i++) d[i - from] = (Py_UCS1)lc(t, i);
    return call_bool(h->assigned, Py_BuildValue("(NnnO)", lower, lo - from, a - from, lower));
}

/* pii_keys._token: the key in the token a:b, if it is one, appended to hits; -1 with an exception set. */
static int token(PyObject *hits, const Text *t, const KeyHooks *h, Py_ssize_t a, Py_ssize_t b, int named) {
    Py_ssize_t e = shaped_key(t, a);
    double conf = 0.97;
    if (e >= 0) {
        if (holds_any(t, a, e, PLACEHOLDER)) return 0;
        if (!starts(t, a, "eyJ")) {
            int r = random_value(t, h, a, e, 1);
            if (r <= 0) return r;
        }
    } else {
        if (!named) return 0;
        Py_ssize_t lo = a > ASSIGNED_REACH ? a - ASSIGNED_REACH : 0;
        if (!holds_any(t, lo, a, ASSIGNED_WORDS)) return 0; /* (no name _ASSIGNED accepts, in any case: it fails) */
        int r = assigned(t, h, lo, a);
        if (r <= 0) return r;
        for (e = b; e > a && at(t, e - 1) == '.'; e--) {}
        r = random_value(t, h, a, e, 0);
        if (r <= 0) return r;
        if (holds_any(t, a, e, PLACEHOLDER) || reference(t, a, e)) return 0;
        conf = 0.85;
    }
    PyObject *found = Py_BuildValue("(snnd)", "api_key", a, e, conf);
    int r = found == NULL ? -1 : PyList_Append(hits, found);
    Py_XDECREF(found);
    return r;
}

int key_tokens_into(PyObject *hits, PyObject *text, const Text *t, PyObject *assigned, PyObject *random_looking) {
    const KeyHooks h = {text, assigned, random_looking};
    const unsigned char *tok = t->c;
    /* no key-like name anywhere in the text: only vendor shapes (_SHAPED_FIRST) can be keys */
    int named = holds_any(t, 0, t->n, ASSIGNED_WORDS);
    for (Py_ssize_t i = 0; i < t->n;) {
        if (tok[i] != 't') {
            i++;
            continue;
        }
        Py_ssize_t j = i;
        while (j < t->n && tok[j] == 't') j++;
        if (j - i >= 16 && (named || one_of(at(t, i), "sAgxrhnSe-")) && token(hits, t, &h, i, j, named) < 0)
            return -1;
        i = j;
    }
    return 0;
}

/* key_tokens(text, tokens, assigned, random_looking) -> [hit, ...]: what pii_keys.key_tokens_py finds in the long
 * tokens - vendor-shaped keys and random-looking values assigned to a key-like name - with its two Python functions
 * for the assignment pattern and the entropy where those decide. */
PyObject *py_key_tokens(PyObject *self, PyObject *args) {
    PyObject *text, *tokens, *assigned, *random_looking;
    Text t;
    if (!PyArg_ParseTuple(args, "UO!OO", &text, &PyBytes_Type, &tokens, &assigned, &random_looking)
        || text_of(text, tokens, &t) < 0)
        return NULL;
    PyObject *hits = PyList_New(0);
    if (hits != NULL && key_tokens_into(hits, text, &t, assigned, random_looking) < 0) Py_CLEAR(hits);
    return hits;
}

/* key_check(name, text, a, b) -> int: one check alone, for the tests - "shaped" (shaped_key's end at a, or -1),
 * "random" / "random_shaped" (random_looking: 0, 1, or 2 for the entropy), "reference", "placeholder" (0 or 1). */
PyObject *py_key_check(PyObject *self, PyObject *args) {
    const char *name;
    PyObject *text;
    Py_ssize_t a, b;
    if (!PyArg_ParseTuple(args, "sUnn", &name, &text, &a, &b)) return NULL;
    Text t = {NULL, PyUnicode_GET_LENGTH(text), PyUnicode_KIND(text), PyUnicode_DATA(text)};
    if (a < 0 || b < a || b > t.n) {
        PyErr_SetString(PyExc_ValueError, "a span of the text is needed");
        return NULL;
    }
    Py_ssize_t r;
    if (!strcmp(name, "shaped")) r = shaped_key(&t, a);
    else if (!strcmp(name, "random")) r = random_looking(&t, a, b, 0);
    else if (!strcmp(name, "random_shaped")) r = random_looking(&t, a, b, 1);
    else if (!strcmp(name, "reference")) r = reference(&t, a, b);
    else if (!strcmp(name, "placeholder")) r = holds_any(&t, a, b, PLACEHOLDER);
    else {
        PyErr_Format(PyExc_ValueError, "no key check %s", name);
        return NULL;
    }
    return PyLong_FromSsize_t(r);
}
