/* The built-in detection pass over all the texts of a request, compiled: pii.builtin_hits_py for each (text, key),
 * in one call.
 *
 * Per text it makes the two byte views pii_context.Context makes (from the same 256-byte tables, which Python passes
 * in), then does what builtin_hits_py does: e-mail addresses (emails_into, where the text has an '@'), the keys
 * among its long tokens (key_tokens_into) and PEM private keys (the Python function, where the
 * text holds one), and the numeric types (numbers_into) - in that order, as the same hit tuples. A Context is made
 * only for the rare lookup that Python decides (a window that is not ASCII); table headers go in a dict made for the
 * text when a lookup needs one. What this saves is per text: no Context, no Python call per pass.
 */
#include "_pii_native.h"

static int bad_detect_hooks(void) {
    PyErr_SetString(PyExc_TypeError,
                    "hooks: (class table, token table, numbers hooks, assigned, random_looking, not_tlds, role, "
                    "pem_keys, pem marker, Context, Finding), as pii._DETECT_HOOKS");
    return -1;
}

typedef struct {
    const unsigned char *class_table, *token_table;
    PyObject *assigned, *random_looking, *not_tlds, *role, *pem_keys, *pem_marker, *context_class;
    PyTypeObject *finding; /* pii.Finding: a named tuple of four */
    Scan scan; /* the numeric types' hooks, read once */
} Detect;

/* A run of 16 token bytes (pii_keys._LONG). */
static int long_token(const unsigned char *tok, Py_ssize_t n) {
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if ((run = tok[i] == 't' ? run + 1 : 0) >= 16) return 1;
    return 0;
}

/* builtin_hits_py(text, key) into hits; `views`: room for 2 bytes per character. */
static int one(const Detect *d, PyObject *hits, PyObject *text, PyObject *key, unsigned char *views) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    unsigned char *classes = views, *tokens = views + n;
    if (kind == PyUnicode_1BYTE_KIND) { /* text.encode("ascii", "replace").translate(table) */
        const unsigned char *bytes = data;
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char b = bytes[i] < 128 ? bytes[i] : '?';
            classes[i] = d->class_table[b];
            tokens[i] = d->token_table[b];
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 ch = PyUnicode_READ(kind, data, i);
            unsigned char b = ch < 128 ? (unsigned char)ch : '?';
            classes[i] = d->class_table[b];
            tokens[i] = d->token_table[b];
        }
    }
    Py_ssize_t at = PyUnicode_FindChar(text, '@', 0, n, 1);
    if (at == -2 || (at >= 0 && emails_into(hits, text, d->not_tlds, d->role) < 0)) return -1;
    if (long_token(tokens, n)) {
        Text t = {tokens, n, kind, data};
        if (key_tokens_into(hits, text, &t, d->assigned, d->random_looking) < 0) return -1;
    }
    Py_ssize_t pem = PyUnicode_Find(text, d->pem_marker, 0, n, 1);
    if (pem == -2 || (pem >= 0 && extend_hits(hits, PyObject_CallFunctionObjArgs(d->pem_keys, text, NULL)) < 0))
        return -1;
    if (n == 0 || memchr(classes, '0', (size_t)n) == NULL) return 0;
    Scan s = d->scan;
    Lazy lazy = {NULL, NULL, d->context_class};
    s.t = (Text){classes, n, kind, data};
    s.text = text;
    s.key = key;
    s.ascii = PyUnicode_IS_ASCII(text);
    s.lazy = &lazy;
    int r = numbers_into(hits, &s);
    Py_XDECREF(lazy.headers);
    Py_XDECREF(lazy.ctx);
    return r;
}

/* A Place's text and key (request_text.key_of: the last element of its path when that is a str and the place is in
 * JSON, else ""), borrowed; -1 with an exception set when it is not a Place's shape. */
static int place_text(PyObject *place, PyObject *empty, PyObject **text, PyObject **key) {
    if (place == NULL || !PyTuple_Check(place) || PyTuple_GET_SIZE(place) != 3
        || !PyTuple_Check(PyTuple_GET_ITEM(place, 0)) || PyTuple_GET_SIZE(PyTuple_GET_ITEM(place, 0)) == 0) {
        PyErr_SetString(PyExc_TypeError, "a Place is (path, text, in_json), its path not empty");
        return -1;
    }
    PyObject *path = PyTuple_GET_ITEM(place, 0), *last = PyTuple_GET_ITEM(path, PyTuple_GET_SIZE(path) - 1);
    int in_json = PyObject_IsTrue(PyTuple_GET_ITEM(place, 2));
    if (in_json < 0) return -1;
    *text = PyTuple_GET_ITEM(place, 1);
    *key = in_json && PyUnicode_Check(last) ? last : empty;
    return 0;
}

/* Each hit tuple of `hits` as a Finding (tuple.__new__(Finding, hit) without the named tuple's constructor). */
static int as_findings(PyTypeObject *finding, PyObject *hits) {
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(hits); j++) {
        PyObject *h = PyList_GET_ITEM(hits, j);
        if (!PyTuple_CheckExact(h) || PyTuple_GET_SIZE(h) != 4) {
            PyErr_SetString(PyExc_TypeError, "a hit is (type, start, end, confidence)");
            return -1;
        }
        PyObject *f = finding->tp_alloc(finding, 4);
        if (f == NULL) return -1;
        for (int k = 0; k < 4; k++) {
            PyObject *v = PyTuple_GET_ITEM(h, k);
            Py_INCREF(v);
            PyTuple_SET_ITEM(f, k, v);
        }
        PyList_SET_ITEM(hits, j, f); /* (the list held the hit: let it go) */
        Py_DECREF(h);
    }
    return 0;
}

/* A hit's start, end and confidence (a Finding of (type, start, end, confidence)). */
typedef struct {
    Py_ssize_t start, end;
    double conf;
    PyObject *hit;
} Span;

static int span_of(PyObject *h, Span *sp) {
    sp->hit = h;
    sp->start = PyLong_AsSsize_t(PyTuple_GET_ITEM(h, 1));
    sp->end = PyLong_AsSsize_t(PyTuple_GET_ITEM(h, 2));
    sp->conf = PyFloat_AsDouble(PyTuple_GET_ITEM(h, 3));
    return PyErr_Occurred() ? -1 : 0;
}

/* resolve_overlapping's order: longest first, then most confident, then earliest. */
static int before(const Span *a, const Span *b) {
    if (a->start - a->end != b->start - b->end) return a->start - a->end < b->start - b->end;
    if (a->conf != b->conf) return a->conf > b->conf;
    return a->start < b->start;
}

/* pii._resolve on `hits` (Findings), in place: sorted by start when no two overlap (and none is empty), else
 * resolve_overlapping's subset - each hit in its order kept unless it overlaps one kept before it - in order of
 * start. Both sorts are stable, as Python's. */
static int resolve(PyObject *hits) {
    Py_ssize_t n = PyList_GET_SIZE(hits), kept = 0;
    if (n < 2) return 0;
    Span *sp = PyMem_Malloc((size_t)n * 2 * sizeof(Span));
    if (sp == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Span *out = sp + n;
    int r = 0, overlap = 0;
    for (Py_ssize_t i = 0; r == 0 && i < n; i++) r = span_of(PyList_GET_ITEM(hits, i), &sp[i]);
    for (Py_ssize_t i = 1; r == 0 && i < n; i++) { /* insertion sort by start (stable; a handful of hits) */
        Span x = sp[i];
        Py_ssize_t j = i;
        for (; j > 0 && sp[j - 1].start > x.start; j--) sp[j] = sp[j - 1];
        sp[j] = x;
    }
    for (Py_ssize_t i = 0; r == 0 && i < n; i++)
        if ((i > 0 && sp[i].start < sp[i - 1].end) || sp[i].start >= sp[i].end) overlap = 1;
    if (r == 0 && overlap) {
        for (Py_ssize_t i = 1; i < n; i++) { /* stable, by resolve_overlapping's key */
            Span x = sp[i];
            Py_ssize_t j = i;
            for (; j > 0 && before(&x, &sp[j - 1]); j--) sp[j] = sp[j - 1];
            sp[j] = x;
        }
        for (Py_ssize_t i = 0; i < n; i++) { /* out: kept, by start (bisect_left on the starts) */
            Py_ssize_t at = 0;
            while (at < kept && out[at].start < sp[i].start) at++;
            if ((at < kept && out[at].start < sp[i].end) || (at > 0 && out[at - 1].end > sp[i].start)) continue;
            memmove(out + at + 1, out + at, (size_t)(kept - at) * sizeof(Span));
            out[at] = sp[i];
            kept++;
        }
    } else {
        out = sp;
        kept = n;
    }
    if (r == 0) {
        PyObject *resolved = PyList_New(kept);
        if (resolved == NULL) {
            r = -1;
        } else {
            for (Py_ssize_t i = 0; i < kept; i++) {
                Py_INCREF(out[i].hit);
                PyList_SET_ITEM(resolved, i, out[i].hit);
            }
            r = PyList_SetSlice(hits, 0, n, resolved);
            Py_DECREF(resolved);
        }
    }
    PyMem_Free(sp);
    return r;
}

/* detect_many(texts, keys, hooks) -> [hits, ...]: builtin_hits_py's hits for each text and its key (two lists of
 * str of one length; or, with keys None, a list of request_text Places, each read as its text and key_of), in
 * order - a list of Findings (hooks' type), or the empty tuple where there are none (most texts: no list is kept);
 * with `resolved` true, overlaps resolved as pii._resolve does (what Detector.detect_many returns then). */
PyObject *py_detect_many(PyObject *self, PyObject *args) {
    PyObject *texts, *keys, *hooks, *class_table, *token_table, *numbers_hooks;
    Detect d;
    int resolved = 0;
    if (!PyArg_ParseTuple(args, "O!OO!|p", &PyList_Type, &texts, &keys, &PyTuple_Type, &hooks, &resolved)) return NULL;
    if (keys != Py_None && !PyList_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "keys: a list of str, or None when texts are Places");
        return NULL;
    }
    PyObject *finding;
    if (!PyArg_ParseTuple(hooks, "O!O!OOOO!O!OUOO!", &PyBytes_Type, &class_table, &PyBytes_Type, &token_table,
                          &numbers_hooks, &d.assigned, &d.random_looking, &PyFrozenSet_Type, &d.not_tlds,
                          &PyFrozenSet_Type, &d.role, &d.pem_keys, &d.pem_marker, &d.context_class, &PyType_Type,
                          &finding)
        || PyBytes_GET_SIZE(class_table) != 256 || PyBytes_GET_SIZE(token_table) != 256
        || !PyType_IsSubtype((PyTypeObject *)finding, &PyTuple_Type)) {
        PyErr_Clear();
        bad_detect_hooks();
        return NULL;
    }
    if (read_hooks(numbers_hooks, &d.scan) < 0) return NULL;
    d.finding = (PyTypeObject *)finding;
    d.class_table = (const unsigned char *)PyBytes_AS_STRING(class_table);
    d.token_table = (const unsigned char *)PyBytes_AS_STRING(token_table);
    Py_ssize_t count = PyList_GET_SIZE(texts), room = 0;
    if (keys != Py_None && PyList_GET_SIZE(keys) != count) {
        PyErr_SetString(PyExc_ValueError, "texts and keys: one key per text");
        return NULL;
    }
    unsigned char *views = NULL;
    PyObject *out = PyList_New(count), *nothing = PyTuple_New(0), *empty = PyUnicode_New(0, 0);
    if (nothing == NULL || empty == NULL) Py_CLEAR(out);
    for (Py_ssize_t k = 0; out != NULL && k < count; k++) {
        /* (the lists are read by index each time: a hook may run any Python, which could change them) */
        PyObject *text = k < PyList_GET_SIZE(texts) ? PyList_GET_ITEM(texts, k) : NULL, *key = NULL;
        if (keys != Py_None) {
            key = k < PyList_GET_SIZE(keys) ? PyList_GET_ITEM(keys, k) : NULL;
        } else if (place_text(text, empty, &text, &key) < 0) {
            Py_CLEAR(out);
            break;
        }
        if (text == NULL || key == NULL || !PyUnicode_Check(text) || !PyUnicode_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "texts and keys: lists of str (or Places, keys None)");
            Py_CLEAR(out);
            break;
        }
        Py_ssize_t n = PyUnicode_GET_LENGTH(text);
        if (2 * n > room) {
            unsigned char *grown = PyMem_Realloc(views, (size_t)(2 * n));
            if (grown == NULL) {
                PyErr_NoMemory();
                Py_CLEAR(out);
                break;
            }
            views = grown;
            room = 2 * n;
        }
        Py_INCREF(text);
        Py_INCREF(key);
        PyObject *hits = PyList_New(0);
        int r = hits == NULL ? -1 : one(&d, hits, text, key, views);
        Py_DECREF(text);
        Py_DECREF(key);
        if (r < 0) {
            Py_XDECREF(hits);
            Py_CLEAR(out);
            break;
        }
        if (PyList_GET_SIZE(hits) == 0) {
            Py_DECREF(hits);
            Py_INCREF(nothing);
            hits = nothing;
        } else if (as_findings(d.finding, hits) < 0 || (resolved && resolve(hits) < 0)) {
            Py_DECREF(hits);
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, k, hits);
    }
    Py_XDECREF(nothing);
    Py_XDECREF(empty);
    PyMem_Free(views);
    return out;
}

/* resolve(hits): resolve() on a list of (type, start, end, confidence) tuples, in place (for the tests). */
PyObject *py_resolve(PyObject *self, PyObject *hits) {
    if (!PyList_Check(hits)) {
        PyErr_SetString(PyExc_TypeError, "hits: a list");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(hits); i++) {
        PyObject *h = PyList_GET_ITEM(hits, i);
        if (!PyTuple_Check(h) || PyTuple_GET_SIZE(h) != 4) {
            PyErr_SetString(PyExc_TypeError, "a hit is (type, start, end, confidence)");
            return NULL;
        }
    }
    if (resolve(hits) < 0) return NULL;
    Py_RETURN_NONE;
}
