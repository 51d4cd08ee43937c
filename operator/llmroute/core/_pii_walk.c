/* The request body walk, compiled: llmroute.core.request_text._walk for the common body - a dict whose messages are
 * dicts - appending the same Places to the same list in the same order.
 *
 * walk(out, body, hooks): for each message that is a dict, its text fields (content, reasoning_content, reasoning)
 * when they are non-empty strings become Places here; what else a message may hold is handed to the Python function
 * that walks it there (hooks: content parts, tool calls when the message has "tool_calls" or "function_call", a
 * message of another Mapping type; prompt and input when the body has them). Places are made as tuple.__new__(Place,
 * (path, text, False)) makes them. */
#include "_pii_native.h"

static const char *const FIELDS[] = {"content", "reasoning_content", "reasoning"}; /* _MESSAGE_TEXT_FIELDS */

typedef struct {
    PyTypeObject *place;
    PyObject *message, *parts, *calls, *strings;
    PyObject *names[3], *tool_calls, *function_call, *messages, *prompt, *input;
} Walk;

/* A Place (path, text, in_json=False), the named tuple made without its constructor; steals `path`. */
static PyObject *place(const Walk *w, PyObject *path, PyObject *text) {
    if (path == NULL) return NULL;
    PyObject *p = w->place->tp_alloc(w->place, 3);
    if (p == NULL) {
        Py_DECREF(path);
        return NULL;
    }
    Py_INCREF(text);
    Py_INCREF(Py_False);
    PyTuple_SET_ITEM(p, 0, path);
    PyTuple_SET_ITEM(p, 1, text);
    PyTuple_SET_ITEM(p, 2, Py_False);
    return p;
}

static int call_hook(PyObject *hook, PyObject *out, PyObject *path, PyObject *value) {
    if (path == NULL) return -1;
    PyObject *r = PyObject_CallFunctionObjArgs(hook, out, path, value, NULL);
    Py_DECREF(path);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* _message(out, ("messages", i), message) for a dict message. */
static int message(const Walk *w, PyObject *out, PyObject *index, PyObject *msg) {
    for (int f = 0; f < 3; f++) {
        PyObject *content = PyDict_GetItemWithError(msg, w->names[f]); /* (borrowed) */
        if (content == NULL) {
            if (PyErr_Occurred()) return -1;
            continue;
        }
        Py_INCREF(content); /* (a hook below may run any Python) */
        int r = 0;
        if (PyUnicode_Check(content)) {
            if (PyUnicode_GET_LENGTH(content)) {
                PyObject *p = place(w, PyTuple_Pack(3, w->messages, index, w->names[f]), content);
                r = p == NULL ? -1 : PyList_Append(out, p);
                Py_XDECREF(p);
            }
        } else if (PyList_Check(content)) {
            r = call_hook(w->parts, out, PyTuple_Pack(3, w->messages, index, w->names[f]), content);
        }
        Py_DECREF(content);
        if (r < 0) return -1;
    }
    int calls = PyDict_Contains(msg, w->tool_calls);
    if (calls == 0) calls = PyDict_Contains(msg, w->function_call);
    if (calls < 0) return -1;
    return calls ? call_hook(w->calls, out, PyTuple_Pack(2, w->messages, index), msg) : 0;
}

static int walk_body(const Walk *w, PyObject *out, PyObject *body) {
    PyObject *messages = PyDict_GetItemWithError(body, w->messages);
    if (messages == NULL && PyErr_Occurred()) return -1;
    if (messages != NULL && PyList_Check(messages)) {
        Py_INCREF(messages);
        int r = 0;
        for (Py_ssize_t i = 0; r == 0 && i < PyList_GET_SIZE(messages); i++) {
            PyObject *msg = PyList_GET_ITEM(messages, i), *index = PyLong_FromSsize_t(i);
            Py_INCREF(msg);
            if (index == NULL) {
                r = -1;
            } else if (PyDict_CheckExact(msg)) {
                r = message(w, out, index, msg);
            } else { /* another Mapping (or not one): _walk's own test and walk */
                int mapping = PyObject_IsInstance(msg, (PyObject *)&PyDict_Type);
                if (mapping == 0) {
                    PyObject *abc = PyImport_ImportModule("collections.abc"), *cls = NULL;
                    if (abc != NULL) cls = PyObject_GetAttrString(abc, "Mapping");
                    mapping = cls == NULL ? -1 : PyObject_IsInstance(msg, cls);
                    Py_XDECREF(cls);
                    Py_XDECREF(abc);
                }
                if (mapping > 0) r = call_hook(w->message, out, PyTuple_Pack(2, w->messages, index), msg);
                else if (mapping < 0) r = -1;
            }
            Py_XDECREF(index);
            Py_DECREF(msg);
        }
        Py_DECREF(messages);
        if (r < 0) return -1;
    }
    PyObject *keys[2] = {w->prompt, w->input};
    for (int k = 0; k < 2; k++) {
        PyObject *value = PyDict_GetItemWithError(body, keys[k]);
        if (value == NULL) {
            if (PyErr_Occurred()) return -1;
            continue;
        }
        Py_INCREF(value);
        int r = call_hook(w->strings, out, PyTuple_Pack(1, keys[k]), value);
        Py_DECREF(value);
        if (r < 0) return -1;
    }
    return 0;
}

/* walk(out, body, hooks): request_text._walk(out, body) for a dict body (hooks: request_text._WALK_HOOKS). */
PyObject *py_walk(PyObject *self, PyObject *args) {
    PyObject *out, *body, *hooks, *place_type;
    Walk w;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyList_Type, &out, &PyDict_Type, &body, &PyTuple_Type, &hooks)) return NULL;
    if (!PyArg_ParseTuple(hooks, "O!OOOO", &PyType_Type, &place_type, &w.message, &w.parts, &w.calls, &w.strings)
        || !PyType_IsSubtype((PyTypeObject *)place_type, &PyTuple_Type)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "hooks: (Place, _message, _parts, _calls, _strings), as _WALK_HOOKS");
        return NULL;
    }
    w.place = (PyTypeObject *)place_type;
    PyObject **names[] = {&w.names[0], &w.names[1], &w.names[2], &w.tool_calls, &w.function_call, &w.messages,
                          &w.prompt, &w.input};
    const char *strs[] = {FIELDS[0],    FIELDS[1],       FIELDS[2], "tool_calls",
                          "function_call", "messages", "prompt",   "input"};
    int made = 0, r = 0;
    for (; made < 8; made++)
        if ((*names[made] = PyUnicode_InternFromString(strs[made])) == NULL) break;
    r = made < 8 ? -1 : walk_body(&w, out, body);
    for (int k = 0; k < made; k++) Py_DECREF(*names[k]);
    if (r < 0) return NULL;
    Py_RETURN_NONE;
}
