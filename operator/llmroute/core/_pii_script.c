#include "_pii_native.h"

/* --- cue words in any script: Cues.pattern and _UNITS as Python's re runs them, for windows that are not ASCII ---
 *
 * Context._window searches a window that is not ASCII with Cues.pattern (IGNORECASE: words of Latin, Cyrillic,
 * Devanagari and CJK text), a few microseconds each; on number-dense multilingual text those windows were the
 * largest cost left in Python. This file runs the same search in C from a description of the pattern that
 * pii_context builds (pii_context._script): the alternatives in the order the pattern tries them, each character
 * as the compiled pattern tests it, and the letter class of the look-arounds.
 *
 * What "as the compiled pattern tests it" means, from CPython's re (_compiler.py and _sre): a pattern character that
 * has no case is compared as it is; a cased one is lowered once (`lo`) and a text character matches it when its
 * simple lowercase (Py_UNICODE_TOLOWER, which _sre's sre_lower_unicode calls) is `lo` or one of the characters
 * re._casefix lists for `lo` (as IN_UNI_IGNORE does). The letter class [A-Za-z\u00c0-\u024f\u0400-\u04ff] under
 * IGNORECASE is the set of its characters lowered, with their re._casefix extras, tested on the text character
 * lowered. tests/unit/test_pii_script.py compares every matcher and the letter class with re over every code point.
 */

#define SCRIPT_CAPSULE "llmroute.core._pii_clusters.script"
#define MATCH_MAX 4      /* a cased character and its re._casefix extras (at most 2 in CPython's table) */
#define INDEX_SLOTS 1024 /* open addressing over the first characters (a power of two; at most half of it used) */

typedef struct {
    Py_UCS4 v[MATCH_MAX];
    unsigned char n, exact; /* exact: an uncased character, compared as it is; else the text's lowercase in v */
} Matcher;

typedef struct {
    int kind;                     /* CUE_POSITIVE, CUE_NEGATIVE or UNIT */
    unsigned char behind, ahead;  /* (?<![letters]) before it, (?![letters]) after it */
    Py_ssize_t len;
    const Matcher *m;
} Alt;

enum { UNIT = 3 };

struct Script {
    Py_ssize_t n_alts;
    Alt *alts;            /* the cue words in the pattern's order, then the units (kind UNIT) */
    Py_UCS4 keys[INDEX_SLOTS];
    unsigned short from[INDEX_SLOTS], count[INDEX_SLOTS]; /* count 0: empty slot */
    unsigned short *order; /* the alternatives a first character may start, by slot, in the pattern's order */
    unsigned char letters[0x10000 / 8];
};

static inline Py_UCS4 lower(Py_UCS4 ch) { return ch < 128 ? (is_upper(ch) ? ch + 32 : ch) : Py_UNICODE_TOLOWER(ch); }

static inline int letter(const Script *s, Py_UCS4 ch) {
    Py_UCS4 l = lower(ch);
    return l < 0x10000 && (s->letters[l >> 3] >> (l & 7) & 1);
}

static inline int accepts(const Matcher *m, Py_UCS4 ch) {
    if (m->exact) return ch == m->v[0];
    Py_UCS4 l = lower(ch);
    for (int k = 0; k < m->n; k++)
        if (m->v[k] == l) return 1;
    return 0;
}

static inline size_t slot_of(Py_UCS4 key) { return (key * 2654435761u) & (INDEX_SLOTS - 1); }

/* The slot holding `key`, or the empty one where it would go. */
static size_t find_slot(const Script *s, Py_UCS4 key) {
    size_t i = slot_of(key);
    while (s->count[i] && s->keys[i] != key) i = (i + 1) & (INDEX_SLOTS - 1);
    return i;
}

/* Alternative `a` at i, the string ending at `stop` (an end position: a look-ahead there sees no character); a
 * look-behind sees the real character before i, as re's does before a start position. */
static int alt_at(const Text *t, const Script *s, const Alt *a, Py_ssize_t i, Py_ssize_t stop) {
    Py_ssize_t e = i + a->len;
    if (e > stop) return 0;
    for (Py_ssize_t k = 0; k < a->len; k++)
        if (!accepts(&a->m[k], at(t, i + k))) return 0;
    if (a->behind && i > 0 && letter(s, at(t, i - 1))) return 0;
    return !(a->ahead && e < stop && letter(s, at(t, e)));
}

/* The first cue word (not a unit) that matches at i in the pattern's order: its length, its kind in *kind; 0 if
 * none. A text character's lowercase is what every cased matcher compares, so it is the one key to look up: an
 * uncased matcher's character is its own lowercase. */
static Py_ssize_t word_at(const Text *t, const Script *s, Py_ssize_t i, Py_ssize_t stop, int *kind) {
    size_t slot = find_slot(s, lower(at(t, i)));
    for (unsigned short k = 0; k < s->count[slot]; k++) {
        const Alt *a = &s->alts[s->order[s->from[slot] + k]];
        if (alt_at(t, s, a, i, stop)) {
            *kind = a->kind;
            return a->len;
        }
    }
    return 0;
}

/* pattern.finditer(text, lo, stop)'s last match: CUE_* of the nearest cue word in the window. */
int script_search(const Text *t, const Script *s, Py_ssize_t lo, Py_ssize_t stop) {
    int last = CUE_NONE, kind;
    for (Py_ssize_t i = lo; i < stop;) {
        Py_ssize_t len = word_at(t, s, i, stop, &kind);
        if (len) {
            last = kind;
            i += len;
        } else {
            i++;
        }
    }
    return last;
}

/* What follows a candidate, from j (after the skipped characters) to hi: CUE_POSITIVE where pattern.match finds a
 * positive word (the positive words come first: one matches iff the match is positive), else CUE_NEGATIVE where
 * _UNITS.match finds a unit, else CUE_NONE. */
int script_after(const Text *t, const Script *s, Py_ssize_t j, Py_ssize_t hi) {
    int kind;
    if (j < hi && word_at(t, s, j, hi, &kind) && kind == CUE_POSITIVE) return CUE_POSITIVE;
    for (Py_ssize_t a = 0; a < s->n_alts; a++)
        if (s->alts[a].kind == UNIT && alt_at(t, s, &s->alts[a], j, hi)) return CUE_NEGATIVE;
    return CUE_NONE;
}

/* --- compiling the description ----------------------------------------------------------------------------------- */

void script_free(Script *s) {
    if (s != NULL) PyMem_Free(s->order);
    PyMem_Free(s);
}

static int bad_script(const char *what) {
    PyErr_Format(PyExc_TypeError, "script: %s", what);
    return -1;
}

/* One character's matcher: an int (an uncased character) or a tuple of 1-4 ints (a cased one: its lowercase and
 * re._casefix's extras). */
static int read_matcher(PyObject *o, Matcher *m) {
    PyObject *one = o;
    Py_ssize_t n = 1;
    m->exact = PyLong_Check(o);
    if (!m->exact) {
        if (!PyTuple_Check(o) || (n = PyTuple_GET_SIZE(o)) < 1 || n > MATCH_MAX)
            return bad_script("a character is an int or a tuple of 1 to 4 ints");
    }
    m->n = (unsigned char)n;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (!m->exact) one = PyTuple_GET_ITEM(o, k);
        long v = PyLong_Check(one) ? PyLong_AsLong(one) : -1;
        if (v < 0 || v > 0x10FFFF) return PyErr_Occurred() ? -1 : bad_script("a character is a code point");
        m->v[k] = (Py_UCS4)v;
    }
    return 0;
}

/* The description: (alternatives, letters), alternatives a tuple of (kind 1, 2 or 3, behind 0/1, ahead 0/1,
 * characters), `letters` 8192 bytes (bit c: the lowercase c is a letter). A new Script, or NULL with TypeError. */
Script *script_compile(PyObject *spec) {
    PyObject *alts, *letters;
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 2 || !PyTuple_Check(alts = PyTuple_GET_ITEM(spec, 0))
        || !PyBytes_Check(letters = PyTuple_GET_ITEM(spec, 1)) || PyBytes_GET_SIZE(letters) != 0x10000 / 8) {
        bad_script("(alternatives, letters of 8192 bytes)");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(alts), chars = 0;
    if (n > 0xFFFF / MATCH_MAX) {
        bad_script("too many alternatives");
        return NULL;
    }
    for (Py_ssize_t a = 0; a < n; a++) {
        PyObject *alt = PyTuple_GET_ITEM(alts, a);
        if (!PyTuple_Check(alt) || PyTuple_GET_SIZE(alt) != 4 || !PyTuple_Check(PyTuple_GET_ITEM(alt, 3))
            || PyTuple_GET_SIZE(PyTuple_GET_ITEM(alt, 3)) < 1) {
            bad_script("an alternative is (kind, behind, ahead, characters), characters a non-empty tuple");
            return NULL;
        }
        chars += PyTuple_GET_SIZE(PyTuple_GET_ITEM(alt, 3));
    }
    Script *s = PyMem_Calloc(1, sizeof(Script) + (size_t)n * sizeof(Alt) + (size_t)chars * sizeof(Matcher));
    unsigned short *order = PyMem_Calloc((size_t)n * MATCH_MAX + 1, sizeof(unsigned short));
    if (s == NULL || order == NULL) {
        PyMem_Free(s);
        PyMem_Free(order);
        PyErr_NoMemory();
        return NULL;
    }
    s->order = order;
    s->n_alts = n;
    s->alts = (Alt *)(s + 1);
    Matcher *pool = (Matcher *)(s->alts + n);
    memcpy(s->letters, PyBytes_AS_STRING(letters), sizeof s->letters);
    for (Py_ssize_t a = 0; a < n; a++) {
        PyObject *alt = PyTuple_GET_ITEM(alts, a), *cs = PyTuple_GET_ITEM(alt, 3);
        long kind = PyLong_Check(PyTuple_GET_ITEM(alt, 0)) ? PyLong_AsLong(PyTuple_GET_ITEM(alt, 0)) : 0;
        int behind = PyObject_IsTrue(PyTuple_GET_ITEM(alt, 1)), ahead = PyObject_IsTrue(PyTuple_GET_ITEM(alt, 2));
        if (kind < CUE_POSITIVE || kind > UNIT || behind < 0 || ahead < 0) {
            if (!PyErr_Occurred()) bad_script("an alternative's kind is 1, 2 or 3");
            goto fail;
        }
        Alt *x = &s->alts[a];
        x->kind = (int)kind;
        x->behind = (unsigned char)behind;
        x->ahead = (unsigned char)ahead;
        x->len = PyTuple_GET_SIZE(cs);
        x->m = pool;
        for (Py_ssize_t k = 0; k < x->len; k++)
            if (read_matcher(PyTuple_GET_ITEM(cs, k), pool++) < 0) goto fail;
    }
    /* the index: each cue word under every lowercase its first character accepts, in the pattern's order (a slot's
     * alternatives are contiguous: counted first, then placed) */
    unsigned short fill[INDEX_SLOTS] = {0};
    size_t used = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass) {
            unsigned short next = 0;
            for (size_t i = 0; i < INDEX_SLOTS; i++) {
                s->from[i] = next;
                next = (unsigned short)(next + s->count[i]);
            }
        }
        for (Py_ssize_t a = 0; a < n; a++) {
            const Matcher *first = s->alts[a].m;
            if (s->alts[a].kind == UNIT) continue;
            for (int k = 0; k < first->n; k++) {
                int seen = 0; /* (a tuple may name a character twice) */
                for (int q = 0; q < k; q++) seen |= first->v[q] == first->v[k];
                if (seen) continue;
                size_t slot = find_slot(s, first->v[k]);
                if (pass) {
                    order[s->from[slot] + fill[slot]++] = (unsigned short)a;
                } else {
                    if (!s->count[slot] && ++used > INDEX_SLOTS / 2) {
                        bad_script("too many first characters");
                        goto fail;
                    }
                    s->keys[slot] = first->v[k];
                    s->count[slot]++;
                }
            }
        }
    }
    return s;
fail:
    script_free(s);
    return NULL;
}

/* --- test hooks ------------------------------------------------------------------------------------------------ */

/* script_chars(words, alt, k, text) -> bytes, one per character of text: 1 where character k of alternative `alt`
 * accepts it (alt -1: where it is a letter of the look-arounds' class). What tests compare with re, per code point. */
PyObject *py_script_chars(PyObject *self, PyObject *args) {
    PyObject *table, *text;
    Py_ssize_t alt, k;
    if (!PyArg_ParseTuple(args, "OnnU", &table, &alt, &k, &text)) return NULL;
    const Words *words = words_of(table);
    if (words == NULL) return NULL;
    const Script *s = words->script;
    if (s == NULL || alt < -1 || alt >= s->n_alts || (alt >= 0 && (k < 0 || k >= s->alts[alt].len))) {
        PyErr_SetString(PyExc_ValueError, "no such character of a compiled alternative");
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL) return NULL;
    char *o = PyBytes_AS_STRING(out);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        o[i] = (char)(alt < 0 ? letter(s, ch) : accepts(&s->alts[alt].m[k], ch));
    }
    return out;
}
