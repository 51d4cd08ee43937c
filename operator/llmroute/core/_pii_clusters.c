/* The PII detector's hot loops, compiled: a CPython extension holding no detection rule of its own.
 *
 * Each function does what a Python function of llmroute.core does (that one stays the reference, runs where this is
 * not built, and is compared with this one by tests/unit/test_pii_clusters.py and test_pii_driver.py on the corpus,
 * the pinned stress texts and generated texts). Its files, sharing _pii_native.h:
 *   - _pii_clusters.c (this one): plan(text, classes, constants), which checks each digit cluster of a text needs,
 *     with the card, SSN and IPv4 candidates whose patterns, checksums and ranges hold - pii_numbers.plan_py, as
 *     (kind, a, b, c) items in the order the driver runs them; every regex it stands for is written out above the
 *     code that does it. Also the module's definition and the test hooks clusters() and shape() (each shape test
 *     alone).
 *   - _pii_numbers.c: numbers(...), the driver - pii_numbers.numbers_py: the plan's items, their context lookups and
 *     decisions, calling the same Python functions for what validates with a library (phone plans, IPv6).
 *   - _pii_context.c: lookup(...), a candidate's whole cue lookup - pii_context.Context.cue, table headers included;
 *     cue(...), its window - Context._window; any_word(text, table) - pii_context.positive_word_py.
 *   - _pii_script.c: the window's search where it is not ASCII - Cues.pattern and _UNITS under IGNORECASE, as re
 *     compiles them (pii_context._script describes them).
 *   - _pii_keys.c: long_tokens and key_tokens, the tokens an API key may be and the keys - pii_keys.key_tokens_py.
 *   - _pii_net.c: emails - pii_net.emails_py. _pii_walk.c: walk - request_text._walk.
 *   - _pii_detect.c: detect_many, one call per request over all its texts - pii.Detector.detect_many.
 * It reads the str (any width) and its class bytes (pii_context.Context: one byte per character) within bounds,
 * allocates only its results, one item array per call and the headers it remembers (in the Context's dict), and
 * holds no state between calls.
 */
#include "_pii_native.h"

/* --- over the class bytes ------------------------------------------------------------------------------------- */

static inline int zero_or_a(unsigned char x) { return x == '0' || x == 'a'; }
static inline int separator(unsigned char x) {
    return x == ' ' || x == '.' || x == '(' || x == ')' || x == '/' || x == '-';
}

/* Zeros (digits) in a row from i, at most ``cap`` counted, below ``end``. */
static Py_ssize_t zeros(const unsigned char *c, Py_ssize_t i, Py_ssize_t end, Py_ssize_t cap) {
    Py_ssize_t k = 0;
    while (i + k < end && c[i + k] == '0' && k < cap) k++;
    return k;
}

/* pii_numbers._CLUSTER matched at p (c[p] == '0'): the branch (its group number, 1-4) and *end, or 0.
 *   0(?:([0a]{3}:[0a:]{2,})|((?<!00)(?:0|[ .()/\-]0|\) 0| \(0){6,}+)|(0{0,2}\.0{1,3}\.0{1,3}\.0{1,3})|((?<=aa0)0))
 */
static int cluster_at(const unsigned char *c, Py_ssize_t n, Py_ssize_t p, Py_ssize_t *end) {
    Py_ssize_t q = p + 1;
    /* 1: [0a]{3}: then [0a:]{2,} (greedy, nothing after it in the pattern: all of them) */
    if (q + 3 < n && zero_or_a(c[q]) && zero_or_a(c[q + 1]) && zero_or_a(c[q + 2]) && c[q + 3] == ':') {
        Py_ssize_t r = q + 4;
        while (r < n && (zero_or_a(c[r]) || c[r] == ':')) r++;
        if (r - (q + 4) >= 2) {
            *end = r;
            return 1;
        }
    }
    /* 2: not inside a run of digits; then six or more steps, taken possessively. At most one step fits at any
     * position (they differ in their first two bytes), so the steps are taken in one way only. */
    if (!(p >= 1 && c[p - 1] == '0')) {
        Py_ssize_t r = q;
        int steps = 0;
        for (;;) {
            if (r < n && c[r] == '0')
                r += 1;
            else if (r + 1 < n && separator(c[r]) && c[r + 1] == '0')
                r += 2;
            else if (r + 2 < n && c[r] == ')' && c[r + 1] == ' ' && c[r + 2] == '0')
                r += 3;
            else if (r + 2 < n && c[r] == ' ' && c[r + 1] == '(' && c[r + 2] == '0')
                r += 3;
            else
                break;
            steps++;
        }
        if (steps >= 6) {
            *end = r;
            return 2;
        }
    }
    /* 3: 0{0,2}\. then 0{1,3}\. twice then 0{1,3}: a run longer than its bound never reaches the dot. */
    {
        Py_ssize_t k = zeros(c, q, n, 3), r;
        if (k <= 2 && q + k < n && c[q + k] == '.') {
            r = q + k + 1;
            int ok = 1;
            for (int g = 0; g < 2 && ok; g++) {
                k = zeros(c, r, n, 4);
                if (k >= 1 && k <= 3 && r + k < n && c[r + k] == '.')
                    r += k + 1;
                else
                    ok = 0;
            }
            if (ok) {
                k = zeros(c, r, n, 3);
                if (k >= 1) {
                    *end = r + k;
                    return 3;
                }
            }
        }
    }
    /* 4: (?<=aa0)0 */
    if (p >= 2 && c[p - 2] == 'a' && c[p - 1] == 'a' && q < n && c[q] == '0') {
        *end = p + 2;
        return 4;
    }
    return 0;
}

/* pii_numbers._SSN_SHAPE_CLASSES.search(c, start, stop): (?<!0)000(?:([- ])00\1|00)0000(?!0). The look-behind
 * reads before ``start`` (as the regex does with a start position); ``stop`` ends the string for the look-ahead. */
static int ssn_shape(const unsigned char *c, Py_ssize_t start, Py_ssize_t stop) {
    for (Py_ssize_t i = start; i + 2 < stop; i++) {
        if (!(c[i] == '0' && c[i + 1] == '0' && c[i + 2] == '0') || (i >= 1 && c[i - 1] == '0')) continue;
        Py_ssize_t j = i + 3, tails[2];
        int m = 0;
        if (j + 3 < stop && (c[j] == '-' || c[j] == ' ') && c[j + 1] == '0' && c[j + 2] == '0' && c[j + 3] == c[j])
            tails[m++] = j + 4;
        if (j + 1 < stop && c[j] == '0' && c[j + 1] == '0') tails[m++] = j + 2;
        for (int t = 0; t < m; t++) {
            Py_ssize_t k = tails[t];
            if (zeros(c, k, stop, 4) == 4 && !(k + 4 < stop && c[k + 4] == '0')) return 1;
        }
    }
    return 0;
}

/* pii_numbers._CARD_SHAPE.search(c, start, stop):
 *   (?<!0)0(?:0{12,18}|000([ -])(?:0{4}\1 0{4}\1 0{4}(?:\1 0{3})?|0{6}\1 0{4,5}|0{4}\1 0{4}\1 0{1,3}))(?!0)
 * (without the spaces). A run of digits ends where the next byte is no digit, so each bounded count followed by
 * a separator or by (?!0) fixes the run's length: 13-19; or 4, then 4-4-4 (the optional 3 after it changes
 * nothing: with or without it the match holds), 6-4/5 or 4-4-1..3, all with the same separator. */
static int card_shape(const unsigned char *c, Py_ssize_t start, Py_ssize_t stop) {
    for (Py_ssize_t i = start; i < stop; i++) {
        if (c[i] != '0' || (i >= 1 && c[i - 1] == '0')) continue;
        Py_ssize_t run = zeros(c, i, stop, 20);
        if (run >= 13 && run <= 19) return 1;
        if (run != 4 || i + 4 >= stop || !(c[i + 4] == ' ' || c[i + 4] == '-')) continue;
        unsigned char s = c[i + 4];
        Py_ssize_t j = i + 5;
        /* a group of exactly `len` digits at `g`, then the separator */
#define GROUP(g, len) (zeros(c, (g), stop, (len) + 1) == (len) && (g) + (len) < stop && c[(g) + (len)] == s)
        if (GROUP(j, 4) && GROUP(j + 5, 4)) {
            Py_ssize_t last = zeros(c, j + 10, stop, 5);
            if (last == 4 || (last >= 1 && last <= 3)) return 1;
        }
        if (GROUP(j, 6)) {
            Py_ssize_t last = zeros(c, j + 7, stop, 6);
            if (last == 4 || last == 5) return 1;
        }
#undef GROUP
    }
    return 0;
}

static int punctuated(const unsigned char *c, Py_ssize_t a, Py_ssize_t b) {
    for (Py_ssize_t i = a; i < b; i++) {
        unsigned char x = c[i];
        if (x == '.' || x == '/' || x == '(' || x == ')' || x == '-') return 1;
    }
    return 0;
}

/* --- over the text ---------------------------------------------------------------------------------------------- */

/* text[a:b] has the shape of `tpl`: 'd' a digit, any other byte itself. */
int shaped(const Text *t, Py_ssize_t a, Py_ssize_t b, const char *tpl) {
    Py_ssize_t len = (Py_ssize_t)strlen(tpl);
    if (b - a != len) return 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_UCS4 ch = at(t, a + i);
        if (tpl[i] == 'd' ? !is_digit(ch) : ch != (Py_UCS4)(unsigned char)tpl[i]) return 0;
    }
    return 1;
}

/* pii_numbers._DOTS.fullmatch(text, a, b):
 *   [0-9]{3}\.[0-9]{3}\.[0-9]{4}|1\.[0-9]{3}\.[0-9]{3}\.[0-9]{4}|[0-9]{2}(?:\.[0-9]{2}){3,4} */
int dots_full(const Text *t, Py_ssize_t a, Py_ssize_t b) {
    return shaped(t, a, b, "ddd.ddd.dddd") || shaped(t, a, b, "1.ddd.ddd.dddd") || shaped(t, a, b, "dd.dd.dd.dd")
           || shaped(t, a, b, "dd.dd.dd.dd.dd");
}

/* text[a:b] is four runs of digits joined by single '-', of lengths 1-5, 1-7, 1-7 and 1. */
static int isbn_groups(const Text *t, Py_ssize_t a, Py_ssize_t b) {
    static const Py_ssize_t most[4] = {5, 7, 7, 1};
    Py_ssize_t i = a;
    for (int g = 0; g < 4; g++) {
        Py_ssize_t k = 0;
        while (i < b && is_digit(at(t, i))) i++, k++;
        if (k < 1 || k > most[g]) return 0;
        if (g < 3) {
            if (i >= b || at(t, i) != '-') return 0;
            i++;
        }
    }
    return i == b;
}

/* pii_numbers._ISBN.fullmatch(text, a, b):
 *   97[89]-?[0-9]{1,5}-[0-9]{1,7}-[0-9]{1,7}-[0-9]|[0-9]{1,5}-[0-9]{1,7}-[0-9]{1,7}-[0-9]
 * After 978/979 the optional '-' is taken when it is there (the groups cannot start with one). */
int isbn_full(const Text *t, Py_ssize_t a, Py_ssize_t b) {
    if (b - a >= 3 && at(t, a) == '9' && at(t, a + 1) == '7' && (at(t, a + 2) == '8' || at(t, a + 2) == '9')) {
        Py_ssize_t r = a + 3;
        if (r < b && at(t, r) == '-') r++;
        if (isbn_groups(t, r, b)) return 1;
    }
    return isbn_groups(t, a, b);
}

static inline int date_sep(Py_UCS4 ch) { return ch == '-' || ch == '/' || ch == '.'; }

/* A day or month field at i, within b: its optional first digit is 0 to `lead_max` ([01]?[0-9], [0-3]?[0-9]). The
 * lengths it may take, 2 then 1, in *lens; returns how many. */
static int field(const Text *t, Py_ssize_t i, Py_ssize_t b, Py_UCS4 lead_max, Py_ssize_t lens[2]) {
    int m = 0;
    if (i + 1 < b && at(t, i) >= '0' && at(t, i) <= lead_max && is_digit(at(t, i + 1))) lens[m++] = 2;
    if (i < b && is_digit(at(t, i))) lens[m++] = 1;
    return m;
}

static int digits_at(const Text *t, Py_ssize_t i, Py_ssize_t b, Py_ssize_t k) {
    if (i + k > b) return 0;
    for (Py_ssize_t j = i; j < i + k; j++)
        if (!is_digit(at(t, j))) return 0;
    return 1;
}

/* pii_numbers._DATE.search(text[a:b]) (a slice: nothing before a or after b is seen):
 *   (?<![0-9])(?:[0-9]{4}([-/.])[01]?[0-9]\1[0-3]?[0-9]|[0-3]?[0-9]([-/.])[01]?[0-9]\2[0-9]{4})(?![0-9])
 * Every way the optional digits can be taken is tried, as the regex backtracks through them. */
static int date_search(const Text *t, Py_ssize_t a, Py_ssize_t b) {
    for (Py_ssize_t i = a; i < b; i++) {
        if (i > a && is_digit(at(t, i - 1))) continue;
        Py_ssize_t lens[2], lens2[2];
        /* year first */
        if (digits_at(t, i, b, 4) && i + 4 < b && date_sep(at(t, i + 4))) {
            Py_UCS4 s = at(t, i + 4);
            int m = field(t, i + 5, b, '1', lens);
            for (int x = 0; x < m; x++) {
                Py_ssize_t j = i + 5 + lens[x];
                if (j >= b || at(t, j) != s) continue;
                int m2 = field(t, j + 1, b, '3', lens2);
                for (int y = 0; y < m2; y++) {
                    Py_ssize_t e = j + 1 + lens2[y];
                    if (e >= b || !is_digit(at(t, e))) return 1;
                }
            }
        }
        /* day first */
        int m = field(t, i, b, '3', lens);
        for (int x = 0; x < m; x++) {
            Py_ssize_t j = i + lens[x];
            if (j >= b || !date_sep(at(t, j))) continue;
            Py_UCS4 s = at(t, j);
            int m2 = field(t, j + 1, b, '1', lens2);
            for (int y = 0; y < m2; y++) {
                Py_ssize_t k = j + 1 + lens2[y];
                if (k >= b || at(t, k) != s || !digits_at(t, k + 1, b, 4)) continue;
                Py_ssize_t e = k + 5;
                if (e >= b || !is_digit(at(t, e))) return 1;
            }
        }
    }
    return 0;
}

/* pii_numbers._PHONE_EDGES.match(text, p): the characters before a cluster let a phone number start there. */
static int phone_edges(const Text *t, Py_ssize_t p) {
#define CH(i) ((i) >= 0 ? at(t, (i)) : (Py_UCS4)0)
#define NB(i) ((i) >= 0 && phone_before(at(t, (i))))
#define COLONS(i) ((i) >= 0 && at(t, (i)) == ':' && at(t, (i) + 1) == ':')
    Py_UCS4 b1 = CH(p - 1), b2 = CH(p - 2);
    if (!(p >= 1 && (b1 == '(' || b1 == '+')) && !NB(p - 1) && !COLONS(p - 2)) return 1;
    if (p >= 1 && b1 == '(' && !NB(p - 2) && !COLONS(p - 3)) return 1;
    if (p >= 1 && b1 == '+' && !(p >= 2 && b2 == '(') && !NB(p - 2) && !COLONS(p - 3)) return 1;
    if (p >= 2 && b2 == '(' && b1 == '+' && !NB(p - 3) && !COLONS(p - 4)) return 1;
    return 0;
#undef CH
#undef NB
#undef COLONS
}

/* pii_numbers._punctuation_not_national(text, classes, a, b). */
static int punctuation_not_national(const Text *t, Py_ssize_t a, Py_ssize_t b) {
    const unsigned char *c = t->c;
    return (has_byte(c, a, b, '.') && !dots_full(t, a, b)) || has_byte(c, a, b, '/')
           || count_byte(c, a, b, '(') != count_byte(c, a, b, ')')
           || (has_byte(c, a, b, '-') && (shaped(t, a, b, "ddd-dd-dddd") || isbn_full(t, a, b)));
}

static int push(Items *out, Py_ssize_t kind, Py_ssize_t a, Py_ssize_t b, Py_ssize_t c) {
    if (out->len == out->cap) {
        Py_ssize_t cap = out->cap ? out->cap * 2 : 32;
        Item *grown = PyMem_Realloc(out->items, (size_t)cap * sizeof(Item));
        if (grown == NULL) return -1;
        out->items = grown;
        out->cap = cap;
    }
    out->items[out->len++] = (Item){kind, a, b, c};
    return 0;
}

/* pii_numbers._NANP.fullmatch(text[a:b]):
 *   (?:\+?1[-. ]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[-. ])[2-9][0-9]{2}[-. ][0-9]{4}
 * One path at most: the prefix is taken when the text starts with '+' or '1' (without it the next character would
 * have to be '(' or 2-9), a separator after its '1' and a space after ')' are taken when present (the next
 * character would have to be '(' or 2-9 again). */
static inline int nanp_sep(Py_UCS4 ch) { return ch == '-' || ch == '.' || ch == ' '; }
static inline int two_to_nine(Py_UCS4 ch) { return ch >= '2' && ch <= '9'; }

int nanp_full(const Text *t, Py_ssize_t a, Py_ssize_t b) {
    Py_ssize_t i = a;
    if (i < b && at(t, i) == '+') i++;
    if (i > a && !(i < b && at(t, i) == '1')) return 0;
    if (i < b && at(t, i) == '1') {
        i++;
        if (i < b && nanp_sep(at(t, i))) i++;
    }
    if (i < b && at(t, i) == '(') {
        if (b - i < 5 || !two_to_nine(at(t, i + 1)) || !is_digit(at(t, i + 2)) || !is_digit(at(t, i + 3))
            || at(t, i + 4) != ')')
            return 0;
        i += 5;
        if (i < b && at(t, i) == ' ') i++;
    } else {
        if (b - i < 4 || !two_to_nine(at(t, i)) || !is_digit(at(t, i + 1)) || !is_digit(at(t, i + 2))
            || !nanp_sep(at(t, i + 3)))
            return 0;
        i += 4;
    }
    if (b - i != 8 || !two_to_nine(at(t, i)) || !is_digit(at(t, i + 1)) || !is_digit(at(t, i + 2))
        || !nanp_sep(at(t, i + 3)))
        return 0;
    for (i += 4; i < b; i++)
        if (!is_digit(at(t, i))) return 0;
    return 1;
}

/* pii_numbers._TRUNK_SHAPE.fullmatch(text[a:b]): \(?0[0-9]*\)?(?:[ \-][0-9]{2,})+
 * One path: each optional part is taken when present (what follows it could not start with that character), each
 * run of digits is taken whole (what follows it is a separator or the end). */
int trunk_full(const Text *t, Py_ssize_t a, Py_ssize_t b) {
    Py_ssize_t i = a, groups = 0;
    if (i < b && at(t, i) == '(') i++;
    if (!(i < b && at(t, i) == '0')) return 0;
    for (i++; i < b && is_digit(at(t, i)); i++) {}
    if (i < b && at(t, i) == ')') i++;
    while (i < b) {
        Py_UCS4 sep = at(t, i++);
        if (sep != ' ' && sep != '-') return 0;
        Py_ssize_t run = i;
        while (i < b && is_digit(at(t, i))) i++;
        if (i - run < 2) return 0;
        groups++;
    }
    return groups > 0;
}

/* --- candidates: the matches of a type's pattern whose checksum holds, before any context ------------------------ */

static inline int digits_run(const Text *t, Py_ssize_t i, Py_ssize_t stop) {
    Py_ssize_t k = 0;
    while (i + k < stop && is_digit(at(t, i + k))) k++;
    return (int)(k > 1000 ? 1000 : k);
}

/* (?![0-9A-Za-z_]|[<seps>][0-9]) at e, the string ending at stop ([0-9A-Za-z_]: word_ascii). */
static int after_ok(const Text *t, Py_ssize_t e, Py_ssize_t stop, const char *seps) {
    if (e < stop && word_ascii(at(t, e))) return 0;
    if (e + 1 < stop && at(t, e) < 128 && strchr(seps, (int)at(t, e)) && at(t, e) && is_digit(at(t, e + 1))) return 0;
    return 1;
}

/* The digits of text[a:b] (its separators left out) into buf; their count. */
static int digits_of(const Text *t, Py_ssize_t a, Py_ssize_t b, char *buf, int cap) {
    int k = 0;
    for (Py_ssize_t i = a; i < b && k < cap; i++)
        if (is_digit(at(t, i))) buf[k++] = (char)at(t, i);
    return k;
}

/* pii_numbers.luhn */
static int luhn(const char *d, int n) {
    int total = 0;
    for (int i = n - 1, second = 0; i >= 0; i--, second ^= 1) {
        int v = d[i] - '0';
        total += second ? (v * 2 > 9 ? v * 2 - 9 : v * 2) : v;
    }
    return total % 10 == 0;
}

static int num(const char *d, int k) {
    int v = 0;
    for (int i = 0; i < k; i++) v = v * 10 + (d[i] - '0');
    return v;
}

/* pii_numbers.issuer_ok */
static int issuer_ok(const char *d, int n) {
    int two = num(d, 2), three = num(d, 3), four = num(d, 4);
    if (d[0] == '4') return n == 13 || n == 16 || n == 19;
    if ((51 <= two && two <= 55) || (2221 <= four && four <= 2720)) return n == 16;
    if (two == 34 || two == 37) return n == 15;
    if ((2200 <= four && four <= 2204) || (3528 <= four && four <= 3589) || two == 62 || four == 6011 || two == 65
        || (644 <= three && three <= 649))
        return 16 <= n && n <= 19;
    if (two == 36 || two == 38 || two == 39 || (300 <= three && three <= 305)) return 14 <= n && n <= 19;
    if (two == 50 || (56 <= two && two <= 69)) return 12 <= n && n <= 19;
    return 0;
}

/* The end of a _CARD match at p (grouped in *grouped), or -1:
 *   [0-9](?<![0-9A-Za-z_./\-][0-9])(?:[0-9]{12,18}|[0-9]{3}([ -])(?:[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?:\1[0-9]{3})?
 *   |[0-9]{6}\1[0-9]{4,5}|[0-9]{4}\1[0-9]{4}\1[0-9]{1,3}))(?![0-9A-Za-z_]|[.\-/][0-9])
 * Tried in the pattern's order; a count followed by a digit never passes the look-ahead, so each group's run
 * length is fixed by where its digits end. */
static Py_ssize_t card_at(const Text *t, Py_ssize_t p, Py_ssize_t hi, int *grouped) {
    if (!is_digit(at(t, p))) return -1;
    if (p >= 1) {
        Py_UCS4 b = at(t, p - 1);
        if (word_ascii(b) || b == '.' || b == '/' || b == '-') return -1;
    }
    const char *seps = ".-/";
    int run = digits_run(t, p, hi);
    *grouped = 0;
    if (run >= 13 && run <= 19 && after_ok(t, p + run, hi, seps)) return p + run;
    if (run != 4 || p + 4 >= hi || !(at(t, p + 4) == ' ' || at(t, p + 4) == '-')) return -1;
    Py_UCS4 s = at(t, p + 4);
    Py_ssize_t j = p + 5;
    *grouped = 1;
#define SEP(i) ((i) < hi && at(t, (i)) == s)
    if (digits_at(t, j, hi, 4) && SEP(j + 4) && digits_at(t, j + 5, hi, 4) && SEP(j + 9)
        && digits_at(t, j + 10, hi, 4)) {
        Py_ssize_t e = j + 14;
        if (SEP(e) && digits_at(t, e + 1, hi, 3) && after_ok(t, e + 4, hi, seps)) return e + 4;
        if (after_ok(t, e, hi, seps)) return e;
    }
    if (digits_at(t, j, hi, 6) && SEP(j + 6) && digits_at(t, j + 7, hi, 4)) {
        Py_ssize_t e = j + 11;
        if (digits_at(t, e, hi, 1)) {
            if (after_ok(t, e + 1, hi, seps)) return e + 1;
        } else if (after_ok(t, e, hi, seps)) {
            return e;
        }
    }
    if (digits_at(t, j, hi, 4) && SEP(j + 4) && digits_at(t, j + 5, hi, 4) && SEP(j + 9)) {
        int last = digits_run(t, j + 10, hi);
        if (last >= 1 && last <= 3 && after_ok(t, j + 10 + last, hi, seps)) return j + 10 + last;
    }
#undef SEP
    return -1;
}

/* pii_numbers.card_candidates' test of a match's digits: Luhn, an issuer's range, not one digit repeated. */
static int card_valid(const char *d, int n, const Consts *k) {
    int same = 1;
    for (int i = 1; i < n; i++) same &= d[i] == d[0];
    return luhn(d, n) && issuer_ok(d, n) && !same;
}

/* The end of an _SSN match at p (dashed in *dashed), or -1:
 *   [0-9](?<![0-9A-Za-z_./:+\-][0-9])[0-9]{2}(?:([- ])[0-9]{2}\1[0-9]{4}|[0-9]{6})(?![0-9A-Za-z_]|[./:\-][0-9]) */
static Py_ssize_t ssn_at(const Text *t, Py_ssize_t p, Py_ssize_t hi, int *dashed) {
    if (!digits_at(t, p, hi, 3)) return -1;
    if (p >= 1) {
        Py_UCS4 b = at(t, p - 1);
        if (word_ascii(b) || b == '.' || b == '/' || b == ':' || b == '+' || b == '-') return -1;
    }
    const char *seps = "./:-";
    Py_ssize_t j = p + 3;
    if (j < hi && (at(t, j) == '-' || at(t, j) == ' ')) {
        Py_UCS4 s = at(t, j);
        if (digits_at(t, j + 1, hi, 2) && j + 3 < hi && at(t, j + 3) == s && digits_at(t, j + 4, hi, 4)
            && after_ok(t, j + 8, hi, seps)) {
            *dashed = s == '-';
            return j + 8;
        }
        return -1; /* the other branch needs a digit here */
    }
    if (digits_at(t, j, hi, 6) && after_ok(t, j + 6, hi, seps)) {
        *dashed = 0;
        return j + 6;
    }
    return -1;
}

/* pii_numbers.ssn_valid */
static int ssn_valid(const char *d, PyObject *never_issued) {
    if (d[0] == '9' || !memcmp(d, "000", 3) || !memcmp(d, "666", 3) || !memcmp(d + 3, "00", 2)
        || !memcmp(d + 5, "0000", 4))
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(never_issued); i++) {
        PyObject *v = PyTuple_GET_ITEM(never_issued, i);
        if (PyUnicode_IS_ASCII(v) && PyUnicode_GET_LENGTH(v) == 9 && !memcmp(PyUnicode_DATA(v), d, 9)) return 0;
    }
    return 1;
}

static int ssn_valid_digits(const char *d, int n, const Consts *k) { return n == 9 && ssn_valid(d, k->never_issued); }

typedef Py_ssize_t (*Matcher)(const Text *, Py_ssize_t, Py_ssize_t, int *);
typedef int (*Checker)(const char *, int, const Consts *);

/* pii_numbers.card_candidates and ssn_candidates: `match`'s matches in [lo, hi), walked as finditer walks them,
 * whose digits pass `valid`, as items (kind, start, end, the match's flag: grouped, dashed). */
static int candidates(const Text *t, Items *out, Py_ssize_t lo, Py_ssize_t hi, Matcher match, Checker valid,
                      const Consts *k, int kind) {
    char d[32];
    for (Py_ssize_t p = lo; p < hi;) {
        int flag;
        Py_ssize_t e = match(t, p, hi, &flag);
        if (e < 0) {
            p++;
            continue;
        }
        if (valid(d, digits_of(t, p, e, d, (int)sizeof d), k) && push(out, kind, p, e, flag) < 0) return -1;
        p = e;
    }
    return 0;
}

/* A digit run at i within hi read as an octet (1-3 digits, no leading zero, at most 255): its value, or -1; *len. */
static int octet(const Text *t, Py_ssize_t i, Py_ssize_t hi, int *len) {
    int run = digits_run(t, i, hi);
    *len = run;
    if (run < 1 || run > 3 || (run > 1 && at(t, i) == '0')) return -1;
    int v = 0;
    for (int x = 0; x < run; x++) v = v * 10 + (int)(at(t, i + x) - '0');
    return v <= 255 ? v : -1;
}

/* pii_net._MAYBE_PUBLIC_V4 matched at p: its end and octets, or -1. Each octet is a whole run of digits (a longer
 * run or a leading zero never reaches the dot or the look-ahead); the excluded prefixes are read as numbers. */
static Py_ssize_t maybe_public_v4_at(const Text *t, Py_ssize_t p, Py_ssize_t hi, int o[4]) {
    if (p >= 1) {
        Py_UCS4 b = at(t, p - 1);
        if (word_ascii(b) || b == '.' || b == '-') return -1;
    }
    Py_ssize_t i = p;
    for (int k = 0; k < 4; k++) {
        int len;
        o[k] = octet(t, i, hi, &len);
        if (o[k] < 0) return -1;
        i += len;
        if (k < 3) {
            if (i >= hi || at(t, i) != '.') return -1;
            i++;
        }
    }
    if (!after_ok(t, i, hi, ".") || (i < hi && at(t, i) == '-')) return -1; /* (?![0-9A-Za-z_\-]|\.[0-9]) */
    int a = o[0], b = o[1];
    if (a == 0 || a == 10 || a == 127 || a >= 224 || (a == 192 && b == 168) || (a == 172 && b >= 16 && b <= 31)
        || (a == 169 && b == 254))
        return -1;
    return i;
}

/* Whether the address is in none of the ranges (pii_net.public_v4); -1 if a range is not a pair of ints. */
static int public_v4(PyObject *ranges, const int o[4]) {
    unsigned long v = ((unsigned long)o[0] << 24) | ((unsigned long)o[1] << 16) | ((unsigned long)o[2] << 8)
                      | (unsigned long)o[3];
    for (Py_ssize_t r = 0; r < PyTuple_GET_SIZE(ranges); r++) {
        PyObject *pair = PyTuple_GET_ITEM(ranges, r);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) return -1;
        unsigned long net = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(pair, 0));
        unsigned long mask = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(pair, 1));
        if (PyErr_Occurred()) return -1;
        if ((v & mask) == net) return 0;
    }
    return 1;
}

/* pii_net.ipv4_candidates: items (PLAN_IPV4, start, end, both first octets below 10). */
static int ipv4_candidates(const Text *t, Items *out, Py_ssize_t lo, Py_ssize_t hi, const Consts *k, int kind) {
    Py_ssize_t n = t->n;
    for (Py_ssize_t p = lo; p < hi;) {
        int o[4];
        Py_ssize_t e = maybe_public_v4_at(t, p, hi, o);
        if (e < 0) {
            p++;
            continue;
        }
        int pub = public_v4(k->ranges, o);
        if (pub < 0) return -2;
        int pinned = 0;
        if (p >= 2) { /* a version pin right before it (pii_net._PINS) */
            Py_ssize_t np = PyUnicode_GET_LENGTH(k->pins);
            for (Py_ssize_t x = 0; x + 1 < np && !pinned; x += 2)
                pinned = at(t, p - 2) == PyUnicode_READ_CHAR(k->pins, x)
                         && at(t, p - 1) == PyUnicode_READ_CHAR(k->pins, x + 1);
        }
        int cidr = 0; /* /0 to /31 after it: a block (pii_net._cidr_below_32, on the whole text) */
        if (e < n && at(t, e) == '/') {
            int len = digits_run(t, e + 1, n);
            if (len >= 1 && len <= 2) {
                int v = (int)(at(t, e + 1) - '0');
                if (len == 2) v = v * 10 + (int)(at(t, e + 2) - '0');
                cidr = v < 32;
            }
        }
        if (pub && !pinned && !cidr && push(out, kind, p, e, o[0] < 10 && o[1] < 10) < 0) return -1;
        p = e;
    }
    return 0;
}

/* --- the plan --------------------------------------------------------------------------------------------------- */

/* What pii_numbers.numbers does with the cluster [p, end) of `branch`, as items (the comments name its steps). */
static int cluster(const Text *t, Items *out, Py_ssize_t p, Py_ssize_t end, int branch, const Consts *k) {
    const unsigned char *c = t->c;
    Py_ssize_t n = t->n, iban = -1, mark = 0, stop = end + 2 < n ? end + 2 : n;
    if (branch == 1) { /* holds a ':': only an IPv6 address may start here */
        Py_UCS4 first = at(t, p);
        return (first == '2' || first == '3') ? push(out, K_IPV6, p, end, 0) : 0;
    }
    if (p >= 2 && is_upper(at(t, p - 2)) && is_upper(at(t, p - 1))) { /* an IBAN's head: if it is one, the rest */
        iban = out->len; /* of the cluster is skipped */
        if (push(out, K_IBAN, p - 2, 0, 0) < 0) return -1;
        mark = out->len;
    }
    if (branch == 4) goto done;
    int r;
    if ((branch == 3 || count_byte(c, p, end, '.') == 3) && (r = ipv4_candidates(t, out, p, stop, k, K_IPV4)) < 0)
        return r;
    Py_ssize_t digits = count_byte(c, p, end, '0');
    if (digits < 7) goto done;
    if (digits >= 9 && ssn_shape(c, p, stop) && candidates(t, out, p, stop, ssn_at, ssn_valid_digits, k, K_SSN) < 0)
        return -1;
    if (digits >= 12 && card_shape(c, p, stop) && candidates(t, out, p, stop, card_at, card_valid, k, K_CARD) < 0)
        return -1;
    int has_before = p > 0;
    Py_UCS4 before = has_before ? at(t, p - 1) : 0;
    if (digits > 20 || (has_before && phone_before(before) && before != '+')) goto done; /* _NEVER_BEFORE */
    if (has_before && (phone_before(before) || before == '(' || before == '+' || before == ':') /* _EDGE_TESTED */
        && !phone_edges(t, p))
        goto done;
    if (end < n && (word_ascii(at(t, end)) || (at(t, end) == '-' && end + 1 < n
                                               && (at(t, end + 1) == 'X' || at(t, end + 1) == 'x'))))
        goto done;
    int one_try = !has_byte(c, end - 4 > 0 ? end - 4 : 0, end, ' ');
    Py_ssize_t start = p;
    if (before != '+' && (before == '(' || !(at(t, p) == '0' && at(t, p + 1) == '0'))) { /* national */
        if (one_try) {
            if (digits > 12) goto done;
            if (has_before && before == '(') {
                start = p - 1;
            } else if (!punctuated(c, p, end)) {
                if (push(out, K_NATIONAL, p, end, digits) < 0) return -1;
                goto done;
            }
            if (!((has_byte(c, start, end, '.') && !dots_full(t, start, end)) || date_search(t, p, end)
                  || punctuation_not_national(t, start, end)))
                if (push(out, K_NATIONAL, start, end, digits) < 0) return -1;
            goto done;
        }
        if (digits > 15 || date_search(t, p, end)) goto done;
    } else if (one_try) { /* international: after a '+' (or '(+'), or starting with 00 */
        if (has_before && before == '+') start -= (p > 1 && at(t, p - 2) == '(') ? 2 : 1;
        if (push(out, K_INTL, start, end, 0) < 0) return -1;
        goto done;
    }
    if (push(out, K_PHONE_AT, p, end, 0) < 0) return -1;
done:
    if (iban >= 0) out->items[iban].b = out->len - mark;
    return 0;
}

/* A str and its class (or token) bytes as a Text; -1 with ValueError when they differ in length. */
int text_of(PyObject *text, PyObject *classes, Text *t) {
    if (PyBytes_GET_SIZE(classes) != PyUnicode_GET_LENGTH(text)) {
        PyErr_SetString(PyExc_ValueError, "classes must hold one byte per character of text");
        return -1;
    }
    t->c = (const unsigned char *)PyBytes_AS_STRING(classes);
    t->n = PyBytes_GET_SIZE(classes);
    t->kind = PyUnicode_KIND(text);
    t->data = PyUnicode_DATA(text);
    return 0;
}

static int read_args(PyObject *args, Text *t) {
    PyObject *text, *classes;
    if (!PyArg_ParseTuple(args, "UO!", &text, &PyBytes_Type, &classes)) return -1;
    return text_of(text, classes, t);
}

static PyObject *to_list(const Items *out) {
    PyObject *list = PyList_New(out->len);
    if (list == NULL) return NULL;
    for (Py_ssize_t i = 0; i < out->len; i++) {
        const Item *it = &out->items[i];
        PyObject *item = PyTuple_New(4);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
        Py_ssize_t v[4] = {it->kind, it->a, it->b, it->c};
        for (int f = 0; f < 4; f++) {
            PyObject *x = PyLong_FromSsize_t(v[f]);
            if (x == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyTuple_SET_ITEM(item, f, x);
        }
    }
    return list;
}

/* pii_numbers.PLAN_CONSTANTS into *k (borrowed references); -1 with TypeError when it is not that shape. */
int read_consts(PyObject *consts, Consts *k) {
    if (!PyTuple_Check(consts)
        || !PyArg_ParseTuple(consts, "O!O!O!", &PyTuple_Type, &k->ranges, &PyUnicode_Type, &k->pins, &PyTuple_Type,
                             &k->never_issued)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "constants: (ranges, pins, never issued), as pii_numbers.PLAN_CONSTANTS");
        return -1;
    }
    return 0;
}

/* The plan's items for the whole text into *out (which the caller frees); -1 with an exception set. */
int plan_items(const Text *t, Items *out, const Consts *k) {
    const unsigned char *c = t->c;
    Py_ssize_t p = 0, end = 0;
    while (p < t->n) {
        const unsigned char *z = memchr(c + p, '0', (size_t)(t->n - p));
        if (z == NULL) break;
        p = z - c;
        int branch = cluster_at(c, t->n, p, &end);
        if (!branch) {
            p++;
            continue;
        }
        int r = cluster(t, out, p, end, branch, k);
        if (r < 0) {
            if (r == -2) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "ranges: (net, mask) pairs of ints");
            } else {
                PyErr_NoMemory();
            }
            return -1;
        }
        p = end;
    }
    return 0;
}

static PyObject *plan(PyObject *self, PyObject *args) {
    Text t;
    Items out = {NULL, 0, 0};
    PyObject *text, *classes, *consts;
    Consts k;
    if (!PyArg_ParseTuple(args, "UO!O", &text, &PyBytes_Type, &classes, &consts) || read_consts(consts, &k) < 0
        || text_of(text, classes, &t) < 0)
        return NULL;
    PyObject *list = plan_items(&t, &out, &k) < 0 ? NULL : to_list(&out);
    PyMem_Free(out.items);
    return list;
}

/* Test hooks: each shape test alone, to compare with the pattern it stands for. */
static PyObject *clusters(PyObject *self, PyObject *args) {
    Text t;
    if (read_args(args, &t) < 0) return NULL;
    PyObject *list = PyList_New(0);
    Py_ssize_t p = 0, end = 0;
    while (list != NULL && p < t.n) {
        int branch = t.c[p] == '0' ? cluster_at(t.c, t.n, p, &end) : 0;
        if (!branch) {
            p++;
            continue;
        }
        PyObject *item = Py_BuildValue("(nni)", p, end, branch);
        if (item == NULL || PyList_Append(list, item) < 0) Py_CLEAR(list);
        Py_XDECREF(item);
        p = end;
    }
    return list;
}

static PyObject *shape(PyObject *self, PyObject *args) {
    const char *name;
    PyObject *text, *classes;
    Py_ssize_t a, b;
    if (!PyArg_ParseTuple(args, "sUO!nn", &name, &text, &PyBytes_Type, &classes, &a, &b)) return NULL;
    Text t;
    if (text_of(text, classes, &t) < 0) return NULL;
    if (a < 0 || b < a || b > t.n) {
        PyErr_SetString(PyExc_ValueError, "a span of the text is needed");
        return NULL;
    }
    int r;
    if (!strcmp(name, "ssn_shape")) r = ssn_shape(t.c, a, b);
    else if (!strcmp(name, "card_shape")) r = card_shape(t.c, a, b);
    else if (!strcmp(name, "dots")) r = dots_full(&t, a, b);
    else if (!strcmp(name, "isbn")) r = isbn_full(&t, a, b);
    else if (!strcmp(name, "date")) r = date_search(&t, a, b);
    else if (!strcmp(name, "edges")) r = phone_edges(&t, a);
    else if (!strcmp(name, "punctuation")) r = punctuation_not_national(&t, a, b);
    else if (!strcmp(name, "nanp")) r = nanp_full(&t, a, b);
    else if (!strcmp(name, "trunk")) r = trunk_full(&t, a, b);
    else {
        PyErr_Format(PyExc_ValueError, "no shape test %s", name);
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyMethodDef methods[] = {
    {"plan", plan, METH_VARARGS, "plan(text, classes, constants) -> [(kind, a, b, c), ...]: each cluster's checks."},
    {"detect_many", py_detect_many, METH_VARARGS, "detect_many(items, hooks) -> [[hit, ...], ...]: built-in hits."},
    {"walk", py_walk, METH_VARARGS, "walk(out, body, hooks): request_text._walk(out, body) for a dict body."},
    {"emails", py_emails, METH_VARARGS, "emails(text, not_tlds, role) -> [hit, ...]: pii_net.emails_py's hits."},
    {"numbers", py_numbers, METH_VARARGS, "numbers(text, classes, key, headers, ctx, hooks) -> [hit, ...]."},
    {"lookup", py_lookup, METH_VARARGS, "lookup(text, classes, key, headers, ctx, start, end, cues) -> 0-2: a cue."},
    {"words", py_words, METH_VARARGS, "words(table, script=None) -> a Cues.table (and Cues.pattern), compiled."},
    {"script_chars", py_script_chars, METH_VARARGS, "script_chars(words, alt, k, text) -> bytes: test hook."},
    {"cue", py_cue, METH_VARARGS, "cue(text, classes, start, end, lo, hi, words, units) -> 0-3: Context._window's."},
    {"any_word", py_any_word, METH_VARARGS, "any_word(text, words) -> bool: a positive cue word starts in the text."},
    {"long_tokens", py_long_tokens, METH_VARARGS, "long_tokens(text, tokens, first) -> [(start, end), ...]."},
    {"key_tokens", py_key_tokens, METH_VARARGS, "key_tokens(text, tokens, assigned, random_looking) -> [hit, ...]."},
    {"resolve", py_resolve, METH_O, "resolve(hits): pii._resolve on a list of hits, in place (tests)."},
    {"key_check", py_key_check, METH_VARARGS, "key_check(name, text, a, b) -> int: one key check alone (tests)."},
    {"clusters", clusters, METH_VARARGS, "clusters(text, classes) -> [(start, end, branch), ...] (tests)."},
    {"shape", shape, METH_VARARGS, "shape(name, text, classes, a, b) -> bool: one shape test alone (tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pii_clusters", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pii_clusters(void) { return PyModule_Create(&module); }
