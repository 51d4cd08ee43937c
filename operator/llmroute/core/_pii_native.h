/* What the PII detector's compiled part shares between its files (see _pii_clusters.c for what it is and why):
 * the view of a str and its class bytes, the character tests every shape uses, the plan's items and constants, and
 * the functions one file calls in another. Internal: nothing here is a Python API. */
#ifndef LLMROUTE_PII_NATIVE_H
#define LLMROUTE_PII_NATIVE_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Item kinds: pii_numbers.PLAN_IPV6 ... PLAN_PHONE_AT (the tests compare whole items). */
enum { K_IPV6 = 0, K_IBAN = 1, K_IPV4 = 2, K_SSN = 3, K_CARD = 4, K_NATIONAL = 5, K_INTL = 6, K_PHONE_AT = 7 };

typedef struct {
    const unsigned char *c; /* class bytes */
    Py_ssize_t n;           /* characters (== class bytes) */
    int kind;               /* the str's storage */
    const void *data;
} Text;

static inline Py_UCS4 at(const Text *t, Py_ssize_t i) { return PyUnicode_READ(t->kind, t->data, i); }
static inline int is_digit(Py_UCS4 ch) { return ch >= '0' && ch <= '9'; }
static inline int is_upper(Py_UCS4 ch) { return ch >= 'A' && ch <= 'Z'; }
static inline int ascii_alnum(Py_UCS4 ch) { return is_digit(ch) || (ch < 128 && (ch | 32) >= 'a' && (ch | 32) <= 'z'); }
static inline int word_ascii(Py_UCS4 ch) {
    return is_digit(ch) || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
}
/* pii_numbers._PHONE_BEFORE (and _NOT_BEFORE, the same set as a character class). */
static inline int phone_before(Py_UCS4 ch) {
    if (word_ascii(ch)) return 1;
    switch (ch) {
    case '+': case '-': case '.': case '/': case '@': case '#': case '$': case '%': case '^': case '&': case '*':
    case 0x20AC: /* euro */ case 0x00A3: /* pound */
        return 1;
    default:
        return 0;
    }
}

static inline int lower_letter(Py_UCS4 ch) { return ch >= 'a' && ch <= 'z'; }
/* The character at i, lowercased if it is an ASCII letter. */
static inline Py_UCS4 lc(const Text *t, Py_ssize_t i) {
    Py_UCS4 ch = at(t, i);
    return (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch;
}

enum { CUE_NONE = 0, CUE_POSITIVE = 1, CUE_NEGATIVE = 2, CUE_UNDECIDED = 3 };

static inline Py_ssize_t count_byte(const unsigned char *c, Py_ssize_t a, Py_ssize_t b, unsigned char x) {
    Py_ssize_t k = 0;
    for (Py_ssize_t i = a; i < b; i++) k += c[i] == x;
    return k;
}

static inline int has_byte(const unsigned char *c, Py_ssize_t a, Py_ssize_t b, unsigned char x) {
    return a < b && memchr(c + a, x, (size_t)(b - a)) != NULL;
}

typedef struct {
    Py_ssize_t kind, a, b, c;
} Item;

typedef struct {
    Item *items;
    Py_ssize_t len, cap;
} Items;

/* What plan() is given besides the text: pii_net._NOT_PUBLIC_V4 ((net, mask) pairs), pii_net._PINS (joined: two
 * characters each) and pii_numbers._SSN_NEVER_ISSUED, from pii_numbers.PLAN_CONSTANTS. */
typedef struct {
    PyObject *ranges;
    PyObject *pins;
    PyObject *never_issued;
} Consts;

/* _pii_clusters.c: the plan */
int text_of(PyObject *text, PyObject *classes, Text *t);
int read_consts(PyObject *consts, Consts *k);
int plan_items(const Text *t, Items *out, const Consts *k);
int nanp_full(const Text *t, Py_ssize_t a, Py_ssize_t b);
int shaped(const Text *t, Py_ssize_t a, Py_ssize_t b, const char *tpl);
int dots_full(const Text *t, Py_ssize_t a, Py_ssize_t b);
int isbn_full(const Text *t, Py_ssize_t a, Py_ssize_t b);
int trunk_full(const Text *t, Py_ssize_t a, Py_ssize_t b);

/* _pii_keys.c: the keys among a text's long tokens, appended to hits (`tokens`: its token bytes as a Text) */
int key_tokens_into(PyObject *hits, PyObject *text, const Text *tokens, PyObject *assigned, PyObject *random_looking);

/* _pii_net.c: the e-mail addresses in a text, appended to hits */
int emails_into(PyObject *hits, PyObject *text, PyObject *not_tlds, PyObject *role);
PyObject *py_emails(PyObject *self, PyObject *args);

/* _pii_context.c: the cue words around a candidate */
typedef struct {
    const char *rest; /* the word after its first letter */
    Py_ssize_t len;
    int kind; /* CUE_POSITIVE or CUE_NEGATIVE */
} Word;
typedef struct Script Script; /* _pii_script.c: the cue words in any script */
typedef struct {
    Py_ssize_t start[27]; /* the words starting with letter L: words[start[L]:start[L + 1]] */
    Word *words;
    Script *script; /* Cues.pattern and the units for windows that are not ASCII; NULL: left to Context._window */
} Words;
const Words *words_of(PyObject *capsule);
Py_ssize_t cue_word(const Text *t, Py_ssize_t i, Py_ssize_t stop, const Words *words, int positive_only, int loose,
                    int *kind);
int all_ascii(const Text *t, Py_ssize_t a, Py_ssize_t b);
int any_positive(const Text *t, const Words *words);
int window_cue(const Text *t, int ascii, Py_ssize_t start, Py_ssize_t end, Py_ssize_t lo, Py_ssize_t hi,
               const Words *words, PyObject *units);

/* _pii_script.c: Cues.pattern's search in a window (CUE_*), its positive words or a unit right after a candidate */
Script *script_compile(PyObject *spec);
void script_free(Script *s);
int script_search(const Text *t, const Script *s, Py_ssize_t lo, Py_ssize_t stop);
int script_after(const Text *t, const Script *s, Py_ssize_t j, Py_ssize_t hi);

/* A text being scanned and what pii_context.Context holds for it (its key, its table headers, the Context itself for
 * the lookups that Python decides), with pii_numbers' hooks: the tables and Python functions the compiled driver
 * needs (pii_numbers._HOOKS, one tuple; read_scan checks its shape). All borrowed references. */
/* What a Scan makes only when it needs it: the Context's table headers and the Context itself (for a lookup that
 * Python decides). Borrowed when numbers()/lookup() are given them; made, and then owned, by detect_many. */
typedef struct {
    PyObject *headers, *ctx, *context_class;
} Lazy;

typedef struct {
    Text t;
    int ascii;
    PyObject *text, *key;
    Lazy *lazy;
    Consts consts;
    PyObject *units, *cues, *names;
    const Words *words[4];
    PyObject *label_cue, *validated, *valid_in, *iban_countries, *iban_bbans, *ipv6_at;
} Scan;

enum { CUES_PHONE = 0, CUES_CARD = 1, CUES_SSN = 2, CUES_IP = 3, CUES_IBAN = 4 }; /* (IBAN: a name, no cues) */

/* _pii_numbers.c */
int read_hooks(PyObject *hooks, Scan *s);
int read_scan(PyObject *args, Scan *s, Lazy *lazy, Py_ssize_t *start, Py_ssize_t *end, int *which);
int numbers_into(PyObject *hits, const Scan *s);
int extend_hits(PyObject *hits, PyObject *found);

/* _pii_context.c: the whole lookup (Context.cue) for the cues `which` (CUES_*); -1 with an exception set */
int lookup(const Scan *s, Py_ssize_t start, Py_ssize_t end, int which);
PyObject *scan_headers(const Scan *s);
PyObject *scan_context(const Scan *s);

/* the module's functions, one file each */
PyObject *py_words(PyObject *self, PyObject *args);
PyObject *py_cue(PyObject *self, PyObject *args);
PyObject *py_any_word(PyObject *self, PyObject *args);
PyObject *py_lookup(PyObject *self, PyObject *args);
PyObject *py_long_tokens(PyObject *self, PyObject *args);
PyObject *py_key_tokens(PyObject *self, PyObject *args);
PyObject *py_detect_many(PyObject *self, PyObject *args);
PyObject *py_walk(PyObject *self, PyObject *args);
PyObject *py_resolve(PyObject *self, PyObject *hits);
PyObject *py_key_check(PyObject *self, PyObject *args);
PyObject *py_numbers(PyObject *self, PyObject *args);
PyObject *py_script_chars(PyObject *self, PyObject *args);

#endif
