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
