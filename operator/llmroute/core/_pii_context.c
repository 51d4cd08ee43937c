#include "_pii_native.h"

/* --- context: the cue words around a candidate (pii_context.Context._window; _pii_script.c where not ASCII) ----- */

/* A Cues.table compiled once (words(table), a capsule the Cues holds): for each letter a-z, the words starting with
 * it as (rest, length, kind), in the order the pattern tries them. Looking words up in it is plain C: the tuples cost
 * a type check and a conversion per word, dozens of words per position. */
#define WORDS_CAPSULE "llmroute.core._pii_clusters.words"

static void words_free(PyObject *capsule) {
    Words *words = PyCapsule_GetPointer(capsule, WORDS_CAPSULE);
    if (words != NULL) script_free(words->script);
    PyMem_Free(words);
}

/* words(table, script=None) -> the compiled table; TypeError unless `table` is 26 tuples of (ASCII str, 1 or 2) pairs
 * and `script` None or what script_compile reads (pii_context._script: Cues.pattern for windows that are not ASCII;
 * without it those are left to Context._window). */
PyObject *py_words(PyObject *self, PyObject *args) {
    PyObject *table, *spec = Py_None;
    if (!PyArg_ParseTuple(args, "O|O", &table, &spec)) return NULL;
    Py_ssize_t count = 0, chars = 0;
    if (!PyTuple_Check(table) || PyTuple_GET_SIZE(table) != 26) goto bad;
    for (int letter = 0; letter < 26; letter++) {
        PyObject *words = PyTuple_GET_ITEM(table, letter);
        if (!PyTuple_Check(words)) goto bad;
        for (Py_ssize_t w = 0; w < PyTuple_GET_SIZE(words); w++) {
            PyObject *pair = PyTuple_GET_ITEM(words, w), *rest;
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2
                || !PyUnicode_Check(rest = PyTuple_GET_ITEM(pair, 0)) || !PyUnicode_IS_ASCII(rest)
                || !PyLong_Check(PyTuple_GET_ITEM(pair, 1)))
                goto bad;
            long kind = PyLong_AsLong(PyTuple_GET_ITEM(pair, 1));
            if (kind != CUE_POSITIVE && kind != CUE_NEGATIVE) goto bad;
            count++;
            chars += PyUnicode_GET_LENGTH(rest);
        }
    }
    Words *compiled = PyMem_Malloc(sizeof(Words) + (size_t)count * sizeof(Word) + (size_t)chars);
    if (compiled == NULL) return PyErr_NoMemory();
    Word *word = (Word *)(compiled + 1);
    char *pool = (char *)(word + count);
    compiled->words = word;
    compiled->script = NULL;
    if (spec != Py_None && (compiled->script = script_compile(spec)) == NULL) {
        PyMem_Free(compiled);
        return NULL;
    }
    for (int letter = 0; letter < 26; letter++) {
        PyObject *words = PyTuple_GET_ITEM(table, letter);
        compiled->start[letter] = word - compiled->words;
        for (Py_ssize_t w = 0; w < PyTuple_GET_SIZE(words); w++, word++) {
            PyObject *pair = PyTuple_GET_ITEM(words, w), *rest = PyTuple_GET_ITEM(pair, 0);
            word->len = PyUnicode_GET_LENGTH(rest);
            word->kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(pair, 1));
            word->rest = pool;
            memcpy(pool, PyUnicode_DATA(rest), (size_t)word->len);
            pool += word->len;
        }
    }
    compiled->start[26] = count;
    PyObject *capsule = PyCapsule_New(compiled, WORDS_CAPSULE, words_free);
    if (capsule == NULL) {
        script_free(compiled->script);
        PyMem_Free(compiled);
    }
    return capsule;
bad:
    PyErr_SetString(PyExc_TypeError, "table: 26 tuples of (str, int) pairs, for the letters a-z, kinds 1 or 2");
    return NULL;
}

/* The compiled table in a capsule made by words(); NULL with TypeError if it is not one. */
const Words *words_of(PyObject *capsule) {
    if (!PyCapsule_IsValid(capsule, WORDS_CAPSULE)) {
        PyErr_SetString(PyExc_TypeError, "words: a table compiled by _pii_clusters.words (Cues.words)");
        return NULL;
    }
    return PyCapsule_GetPointer(capsule, WORDS_CAPSULE);
}

/* A cue word of `words` at i (Cues.ascii matched at i, on the text lowercased): a word counts with no letter before
 * it and none after it (`stop` ends the string, as an end position does), the first that matches in the table's
 * order. Its length, and its kind in *kind; 0 if none. `positive_only`: only the positive words (Cues.after's and
 * Cues.positive's); `loose`: no "no letter after" (Cues.positive's). The characters it reads (i - 1 to the word's
 * end, within stop) are ASCII: the caller checks. */
Py_ssize_t cue_word(const Text *t, Py_ssize_t i, Py_ssize_t stop, const Words *words, int positive_only, int loose,
                    int *kind) {
    Py_UCS4 first = i < stop ? lc(t, i) : 0;
    if (!lower_letter(first) || (i >= 1 && lower_letter(lc(t, i - 1)))) return 0;
    const Word *w = words->words + words->start[first - 'a'], *last = words->words + words->start[first - 'a' + 1];
    for (; w < last; w++) {
        if (positive_only && w->kind != CUE_POSITIVE) continue;
        Py_ssize_t len = w->len, e = i + 1 + len;
        if (e > stop) continue;
        Py_ssize_t x = 0;
        while (x < len && lc(t, i + 1 + x) == (Py_UCS4)(unsigned char)w->rest[x]) x++;
        if (x < len || (!loose && e < stop && lower_letter(lc(t, e)))) continue;
        *kind = w->kind;
        return 1 + len;
    }
    return 0;
}

/* A positive word starts somewhere in the ASCII `t`, read lowercased, with no letter before it (Cues.positive). */
int any_positive(const Text *t, const Words *words) {
    int kind;
    for (Py_ssize_t i = 0; i < t->n; i++)
        if (cue_word(t, i, t->n, words, 1, 1, &kind)) return 1;
    return 0;
}

int all_ascii(const Text *t, Py_ssize_t a, Py_ssize_t b) {
    if (t->kind == PyUnicode_1BYTE_KIND) {
        const unsigned char *d = (const unsigned char *)t->data;
        for (Py_ssize_t i = a; i < b; i++)
            if (d[i] >= 128) return 0;
        return 1;
    }
    for (Py_ssize_t i = a; i < b; i++)
        if (at(t, i) >= 128) return 0;
    return 1;
}

/* What Context._window finds: 0 none, 1 positive, 2 negative, 3 undecided - the nearest cue word in the window
 * lo:start (after the last digit in it), a '#' right before the candidate, else a positive word or a unit right after
 * it (within hi, after up to three of " \t([:-"). It reads the text lowercased where it is ASCII; where the window
 * or what follows it (or the character before either) is not, Cues.pattern and _UNITS as _pii_script.c runs them
 * (the words' script), or, for words compiled without one, the answer is 3: _window decides. `ascii`: the whole text
 * is; `words`: the cues' compiled table; `units`: the unit words, in order. -1 with an exception set. */
int window_cue(const Text *t, int ascii, Py_ssize_t start, Py_ssize_t end, Py_ssize_t lo, Py_ssize_t hi,
               const Words *words, PyObject *units) {
    int kind = CUE_NONE;
    const unsigned char *c = t->c;
    for (Py_ssize_t d = start - 1; d >= lo; d--) /* the window starts after the last digit in it */
        if (c[d] == '0') {
            lo = d + 1;
            break;
        }
    if (has_byte(c, lo, start, 'a') || has_byte(c, lo, start, 'x')) { /* every cue word and '#' holds one */
        int last = CUE_NONE;
        if (!ascii && (!all_ascii(t, lo, start) || (lo >= 1 && at(t, lo - 1) >= 128))) {
            if (words->script == NULL) return CUE_UNDECIDED;
            last = script_search(t, words->script, lo, start); /* Cues.pattern.finditer(text, lo, start) */
        } else {
            for (Py_ssize_t i = lo; i < start;) { /* as finditer walks: the last match is the nearest cue */
                Py_ssize_t len = cue_word(t, i, start, words, 0, 0, &kind);
                if (len) {
                    last = kind;
                    i += len;
                } else {
                    i++;
                }
            }
        }
        if (last != CUE_NONE) return last;
        /* _IMMEDIATE_NEGATIVE: [#№][ \t]?$ over max(lo, start - 2):start (`$` also matches before a newline that
         * ends the string, which a window on one line never holds) */
        Py_UCS4 last1 = start - 1 >= lo ? at(t, start - 1) : 0, last2 = start - 2 >= lo ? at(t, start - 2) : 0;
        if (last1 == '#' || last1 == 0x2116 || ((last2 == '#' || last2 == 0x2116)
                                                && (last1 == ' ' || last1 == '\t' || last1 == '\n')))
            return CUE_NEGATIVE;
    }
    Py_ssize_t j = end; /* Cues.after: the skip (possessive), then a positive word, else a unit */
    for (int k = 0; k < 3 && j < hi && at(t, j) < 128 && at(t, j) && strchr(" \t([:-", (int)at(t, j)); k++) j++;
    if (!ascii && (j == 0 || !all_ascii(t, j, hi) || at(t, j - 1) >= 128)) { /* (at 0 _window reads text[0] */
        if (words->script == NULL || j == 0) return CUE_UNDECIDED;            /* as the one before: no candidate) */
        return script_after(t, words->script, j, hi);
    }
    if (cue_word(t, j, hi, words, 1, 0, &kind)) return CUE_POSITIVE;
    for (Py_ssize_t u = 0; u < PyTuple_GET_SIZE(units); u++) {
        PyObject *unit = PyTuple_GET_ITEM(units, u);
        if (!PyUnicode_Check(unit) || !PyUnicode_IS_ASCII(unit)) {
            PyErr_SetString(PyExc_TypeError, "units: ASCII str");
            return -1;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(unit), e = j + len, x = 0;
        const char *r = (const char *)PyUnicode_DATA(unit);
        if (e > hi) continue;
        while (x < len && lc(t, j + x) == (Py_UCS4)(unsigned char)r[x]) x++;
        if (x == len && !(e < hi && lower_letter(lc(t, e)))) return CUE_NEGATIVE;
    }
    if (j < hi && at(t, j) == '%') return CUE_NEGATIVE;
    return CUE_NONE;
}

/* cue(text, classes, start, end, lo, hi, words, units) -> window_cue's answer. */
PyObject *py_cue(PyObject *self, PyObject *args) {
    PyObject *text, *classes, *table, *units;
    Py_ssize_t start, end, lo, hi;
    if (!PyArg_ParseTuple(args, "UO!nnnnOO!", &text, &PyBytes_Type, &classes, &start, &end, &lo, &hi, &table,
                          &PyTuple_Type, &units))
        return NULL;
    Text t;
    if (text_of(text, classes, &t) < 0) return NULL;
    if (!(0 <= lo && lo <= start && start <= end && end <= hi && hi <= t.n)) {
        PyErr_SetString(PyExc_ValueError, "lo <= start <= end <= hi within the text are needed");
        return NULL;
    }
    const Words *words = words_of(table);
    if (words == NULL) return NULL;
    int kind = window_cue(&t, PyUnicode_IS_ASCII(text), start, end, lo, hi, words, units);
    return kind < 0 ? NULL : PyLong_FromLong(kind);
}

/* --- the whole lookup: pii_context.Context.cue ---------------------------------------------------------------- */

#define LINE_LOOKBACK 4096 /* pii_context._LINE_LOOKBACK */
#define WINDOW 40          /* pii_context.WINDOW */
#define AFTER 16           /* pii_context.AFTER */

/* The first cue word of `words` in the ASCII `label` (Cues.pattern.search(label), where label is ASCII: the ascii
 * words on it lowercased find the same); CUE_NONE if none. */
static int label_words(PyObject *label, const Words *words) {
    Text l = {NULL, PyUnicode_GET_LENGTH(label), PyUnicode_KIND(label), PyUnicode_DATA(label)};
    int kind = CUE_NONE;
    for (Py_ssize_t i = 0; i < l.n; i++)
        if (cue_word(&l, i, l.n, words, 0, 0, &kind)) return kind;
    return CUE_NONE;
}

/* The cell `column` of the header row (pii_context._cell: header.split(delimiter)[column], or "" past the last):
 * a new reference. */
static PyObject *cell(PyObject *header, Py_UCS4 delimiter, Py_ssize_t column) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(header), from = 0;
    for (Py_ssize_t k = 0; k < column; k++) {
        Py_ssize_t d = PyUnicode_FindChar(header, delimiter, from, n, 1);
        if (d < 0) return d == -1 ? PyUnicode_New(0, 0) : NULL;
        from = d + 1;
    }
    Py_ssize_t d = PyUnicode_FindChar(header, delimiter, from, n, 1);
    if (d == -2) return NULL;
    return PyUnicode_Substring(header, from, d < 0 ? n : d);
}

/* A pii_context.Cue (or an int from a Python hook) as CUE_*; -1 with an exception set. */
static int cue_value(PyObject *found) {
    PyObject *value = PyLong_Check(found) ? (Py_INCREF(found), found) : PyObject_GetAttrString(found, "value");
    long kind = value == NULL ? -1 : PyLong_AsLong(value);
    Py_XDECREF(value);
    if (kind == -1 && PyErr_Occurred()) return -1;
    if (kind < CUE_NONE || kind > CUE_NEGATIVE) {
        PyErr_SetString(PyExc_ValueError, "a cue is 0, 1 or 2");
        return -1;
    }
    return (int)kind;
}

/* The Context's table headers: the dict numbers() was given, or one made for this text on first use (detect_many
 * makes no Context unless a lookup needs Python). A borrowed reference; NULL with an exception set. */
PyObject *scan_headers(const Scan *s) {
    Lazy *lazy = s->lazy;
    if (lazy->headers == NULL) lazy->headers = PyDict_New();
    return lazy->headers;
}

/* The text's pii_context.Context: the one numbers() was given, or one made from (text, key) on first use. */
PyObject *scan_context(const Scan *s) {
    Lazy *lazy = s->lazy;
    if (lazy->ctx == NULL) lazy->ctx = PyObject_CallFunctionObjArgs(lazy->context_class, s->text, s->key, NULL);
    return lazy->ctx;
}

#define HEADER_CELL_MAX 32 /* pii_context._HEADER_CELL_MAX */

/* headers[row] = found (None for NULL) for each visited row. */
static int remember(PyObject *headers, const Py_ssize_t *rows, Py_ssize_t n, PyObject *found) {
    for (Py_ssize_t v = 0; v < n; v++) {
        PyObject *k = PyLong_FromSsize_t(rows[v]);
        int r = k == NULL ? -1 : PyDict_SetItem(headers, k, found != NULL ? found : Py_None);
        Py_XDECREF(k);
        if (r < 0) return -1;
    }
    return 0;
}

/* The header row above `pos` (the start of a row of `cells` delimiters) and the rows it walked, as Context._table:
 * *found (a new reference, or NULL: no header) and the visited rows appended to *rows. */
static int header_above(const Scan *s, PyObject *headers, Py_ssize_t pos, Py_UCS4 delimiter, PyObject *delim,
                        Py_ssize_t cells, Py_ssize_t **rows, Py_ssize_t *n_rows, Py_ssize_t *cap, PyObject **found) {
    PyObject *text = s->text;
    *found = NULL;
    while (pos > 0) {
        Py_ssize_t prev_start = PyUnicode_FindChar(text, '\n', 0, pos - 1, -1) + 1;
        PyObject *k = PyLong_FromSsize_t(prev_start);
        if (k == NULL) return -1;
        PyObject *cached = PyDict_GetItemWithError(headers, k);
        Py_DECREF(k);
        if (cached != NULL) { /* a row looked up before: its answer, when its delimiter is this one */
            if (PyTuple_Check(cached) && PyTuple_GET_SIZE(cached) == 2 && PyUnicode_Check(PyTuple_GET_ITEM(cached, 1))
                && PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(cached, 1)) == 1
                && PyUnicode_READ_CHAR(PyTuple_GET_ITEM(cached, 1), 0) == delimiter) {
                Py_INCREF(cached);
                *found = cached;
            }
            return 0;
        }
        if (PyErr_Occurred()) return -1;
        if (PyUnicode_Count(text, delim, prev_start, pos - 1) != cells) return 0;
        if (!has_byte(s->t.c, prev_start, pos - 1, '0')) { /* no ASCII digit: the header (if its cells fit) */
            int digit = 0;
            for (Py_ssize_t x = prev_start; !digit && x < pos - 1; x++) digit = Py_UNICODE_ISDIGIT(at(&s->t, x));
            if (!digit) {
                Py_ssize_t cell_start = prev_start;
                for (Py_ssize_t x = prev_start; x <= pos - 1; x++) {
                    if (x == pos - 1 || at(&s->t, x) == delimiter) {
                        if (x - cell_start > HEADER_CELL_MAX) return 0;
                        cell_start = x + 1;
                    }
                }
                PyObject *header = PyUnicode_Substring(text, prev_start, pos - 1);
                *found = header == NULL ? NULL : PyTuple_Pack(2, header, delim);
                Py_XDECREF(header);
                return *found == NULL ? -1 : 0;
            }
        }
        if (*n_rows == *cap) {
            Py_ssize_t *grown = PyMem_Realloc(*rows, (size_t)(*cap * 2) * sizeof(Py_ssize_t));
            if (grown == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            *rows = grown;
            *cap *= 2;
        }
        (*rows)[(*n_rows)++] = prev_start;
        pos = prev_start;
    }
    return 0;
}

/* The row's table: (header, delimiter) from Context.headers, or found as Context._table finds it (the delimiter that
 * is most frequent in the row, the first of ",;\t|" on a tie; the nearest row above with as many of it and no digit,
 * whose cells are short, over rows of as many), remembered in headers for the row and every row walked; NULL without
 * an exception when the row is not a table row. A new reference. */
static PyObject *row_table(const Scan *s, Py_ssize_t row_start) {
    PyObject *text = s->text, *headers = scan_headers(s), *k, *found;
    if (headers == NULL || (k = PyLong_FromSsize_t(row_start)) == NULL) return NULL;
    found = PyDict_GetItemWithError(headers, k);
    Py_DECREF(k);
    if (found != NULL) {
        if (found == Py_None) return NULL;
        if (!PyTuple_Check(found) || PyTuple_GET_SIZE(found) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(found, 0))
            || !PyUnicode_Check(PyTuple_GET_ITEM(found, 1)) || PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(found, 1)) != 1) {
            PyErr_SetString(PyExc_TypeError, "a table is (header, delimiter), the delimiter one character");
            return NULL;
        }
        Py_INCREF(found);
        return found;
    }
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t row_end = PyUnicode_FindChar(text, '\n', row_start, s->t.n, 1);
    if (row_end < 0) row_end = s->t.n;
    static const Py_UCS4 delimiters[4] = {',', ';', '\t', '|'}; /* pii_context._DELIMITERS */
    Py_ssize_t counts[4] = {0, 0, 0, 0}, cells = 0;
    for (Py_ssize_t x = row_start; x < row_end; x++) {
        Py_UCS4 ch = at(&s->t, x);
        for (int d = 0; d < 4; d++) counts[d] += ch == delimiters[d];
    }
    int best = 0;
    for (int d = 0; d < 4; d++)
        if (counts[d] > cells) {
            cells = counts[d];
            best = d;
        }
    Py_ssize_t cap = 8, n_rows = 1, *rows = PyMem_Malloc((size_t)cap * sizeof(Py_ssize_t));
    if (rows == NULL) return PyErr_NoMemory();
    rows[0] = row_start;
    found = NULL;
    int r = 0;
    if (cells && row_start) { /* else: no delimiter, not a table row; or no row above to be its header */
        PyObject *delim = PyUnicode_FromOrdinal((int)delimiters[best]);
        r = delim == NULL ? -1
                          : header_above(s, headers, row_start, delimiters[best], delim, cells, &rows, &n_rows, &cap,
                                         &found);
        Py_XDECREF(delim);
    }
    if (r == 0) r = remember(headers, rows, n_rows, found);
    PyMem_Free(rows);
    if (r < 0) Py_CLEAR(found);
    return found;
}

/* Context.cue(start, end, cues): the nearest cue before the candidate, else a positive cue or a unit right after
 * it, else its column header or key. The window stays on the candidate's line, in its cell when the line is a table
 * row; window_cue reads it (Context._window decides only for words compiled without a script), and a label that is
 * not ASCII is searched by the hook label_cue (Cues.pattern). The steps are Context.cue's, in its order. */
int lookup(const Scan *s, Py_ssize_t start, Py_ssize_t end, int which) {
    const Text *t = &s->t;
    PyObject *text = s->text, *row = NULL, *label;
    const Words *words = s->words[which];
    Py_ssize_t nl = PyUnicode_FindChar(text, '\n', start > LINE_LOOKBACK ? start - LINE_LOOKBACK : 0, start, -1);
    if (nl == -2) return -1;
    Py_ssize_t line_start = nl + 1;
    if (line_start) { /* (a row starting at 0 has no row above: not a table row, Context._table) */
        row = row_table(s, line_start);
        if (row == NULL && PyErr_Occurred()) return -1;
    }
    Py_ssize_t lo = start - WINDOW > line_start ? start - WINDOW : line_start;
    Py_ssize_t hi = end + AFTER < t->n ? end + AFTER : t->n;
    Py_UCS4 delimiter = 0;
    if (row != NULL) { /* the window stays in the candidate's cell */
        delimiter = PyUnicode_READ_CHAR(PyTuple_GET_ITEM(row, 1), 0);
        Py_ssize_t d = PyUnicode_FindChar(text, delimiter, lo, start, -1);
        if (d + 1 > lo) lo = d + 1;
        Py_ssize_t cell_end = PyUnicode_FindChar(text, delimiter, end, hi, 1);
        if (cell_end >= 0) hi = cell_end;
    }
    int kind = window_cue(t, s->ascii, start, end, lo, hi, words, s->units);
    if (kind == CUE_UNDECIDED) {
        PyObject *ctx = scan_context(s), *found = NULL;
        if (ctx != NULL)
            found = PyObject_CallMethod(ctx, "_window", "nnnnO", start, end, lo, hi, PyTuple_GET_ITEM(s->cues, which));
        kind = found == NULL ? -1 : found == Py_None ? CUE_NONE : cue_value(found);
        Py_XDECREF(found);
    }
    if (kind != CUE_NONE) {
        Py_XDECREF(row);
        return kind;
    }
    if (row != NULL) {
        Py_ssize_t column = PyUnicode_Count(text, PyTuple_GET_ITEM(row, 1), line_start, start);
        label = column < 0 ? NULL : cell(PyTuple_GET_ITEM(row, 0), delimiter, column);
        Py_DECREF(row);
        if (label == NULL) return -1;
    } else {
        label = s->key;
        Py_INCREF(label);
    }
    if (PyUnicode_GET_LENGTH(label) == 0) {
        kind = CUE_NONE;
    } else if (PyUnicode_IS_ASCII(label)) {
        kind = label_words(label, words);
    } else {
        PyObject *found = PyObject_CallFunctionObjArgs(s->label_cue, label, PyTuple_GET_ITEM(s->cues, which), NULL);
        kind = found == NULL ? -1 : cue_value(found);
        Py_XDECREF(found);
    }
    Py_DECREF(label);
    return kind;
}

/* lookup(text, classes, key, headers, ctx, hooks, start, end, which) -> 0-2: lookup's answer (for the tests). */
PyObject *py_lookup(PyObject *self, PyObject *args) {
    Scan s;
    Lazy lazy;
    Py_ssize_t start, end;
    int which;
    if (read_scan(args, &s, &lazy, &start, &end, &which) < 0) return NULL;
    int kind = lookup(&s, start, end, which);
    return kind < 0 ? NULL : PyLong_FromLong(kind);
}

/* any_word(text, words) -> bool: a positive word starts somewhere in the ASCII `text` read lowercased, with no letter
 * before it (Cues.positive.search: the words without "no letter after"). */
PyObject *py_any_word(PyObject *self, PyObject *args) {
    PyObject *text, *table;
    if (!PyArg_ParseTuple(args, "UO", &text, &table)) return NULL;
    const Words *words = words_of(table);
    if (words == NULL) return NULL;
    if (!PyUnicode_IS_ASCII(text)) {
        PyErr_SetString(PyExc_ValueError, "an ASCII text is needed");
        return NULL;
    }
    Text t = {NULL, PyUnicode_GET_LENGTH(text), PyUnicode_KIND(text), PyUnicode_DATA(text)};
    return PyBool_FromLong(any_positive(&t, words));
}
