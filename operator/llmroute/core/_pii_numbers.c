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
                    "hooks: (constants, units, cues, tables, names, label_cue, validated, international, phone_at, "
                    "iban_at, ipv6_at), as pii_numbers._HOOKS");
    return -1;
}

/* The arguments of numbers() (text, classes, key, headers, ctx, hooks) into *s; with `start`, also lookup()'s
 * (start, end, which) after them. -1 with an exception set. */
int read_scan(PyObject *args, Scan *s, Py_ssize_t *start, Py_ssize_t *end, int *which) {
    PyObject *classes, *hooks, *consts;
    int ok = start == NULL
                 ? PyArg_ParseTuple(args, "UO!UO!OO!", &s->text, &PyBytes_Type, &classes, &s->key, &PyDict_Type,
                                    &s->headers, &s->ctx, &PyTuple_Type, &hooks)
                 : PyArg_ParseTuple(args, "UO!UO!OO!nni", &s->text, &PyBytes_Type, &classes, &s->key, &PyDict_Type,
                                    &s->headers, &s->ctx, &PyTuple_Type, &hooks, start, end, which);
    if (!ok || text_of(s->text, classes, &s->t) < 0) return -1;
    s->ascii = PyUnicode_IS_ASCII(s->text);
    if (!PyArg_ParseTuple(hooks, "OO!O!O!O!OOOOOO", &consts, &PyTuple_Type, &s->units, &PyTuple_Type, &s->cues,
                          &PyTuple_Type, &s->tables, &PyTuple_Type, &s->names, &s->label_cue, &s->validated,
                          &s->intl, &s->phone_at, &s->iban_at, &s->ipv6_at)) {
        PyErr_Clear();
        return bad_hooks();
    }
    if (PyTuple_GET_SIZE(s->cues) != 4 || PyTuple_GET_SIZE(s->tables) != 4 || PyTuple_GET_SIZE(s->names) != 4)
        return bad_hooks();
    for (int i = 0; i < 4; i++)
        if (!PyUnicode_Check(PyTuple_GET_ITEM(s->names, i))) return bad_hooks();
    if (read_consts(consts, &s->consts) < 0) return -1;
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

/* Append what a hook returned: a hit tuple, or None (nothing). Steals `found`; 1 if it was a hit, 0 if None. */
static int hook_hit(PyObject *hits, PyObject *found) {
    if (found == NULL) return -1;
    int r = found == Py_None ? 0 : PyList_Append(hits, found) < 0 ? -1 : 1;
    Py_DECREF(found);
    return r;
}

/* A hook's confidence (a float; 0 for none) as a hit of `which`. Steals `found`. */
static int hook_conf(PyObject *hits, const Scan *s, int which, Py_ssize_t a, Py_ssize_t b, PyObject *found) {
    if (found == NULL) return -1;
    double conf = PyFloat_AsDouble(found);
    Py_DECREF(found);
    if (conf == -1.0 && PyErr_Occurred()) return -1;
    return conf != 0.0 ? hit(hits, s, which, a, b, conf) : 0;
}

/* pii_numbers._national: whether the national candidate a:b of `digits` digits is a phone number. */
static int national(PyObject *hits, const Scan *s, Py_ssize_t a, Py_ssize_t b, Py_ssize_t digits, int *positive) {
    int nanp = nanp_full(&s->t, a, b), trunk = 8 <= digits && digits <= 12 && trunk_full(&s->t, a, b);
    if (!(nanp || trunk)) { /* only a positive cue makes a phone of another shape: is there one in the text? */
        if (*positive < 0) {
            PyObject *found = PyObject_CallMethod(s->ctx, "phone_may_be_positive", NULL);
            *positive = found == NULL ? -1 : PyObject_IsTrue(found);
            Py_XDECREF(found);
            if (*positive < 0) return -1;
        }
        if (!*positive) return 0;
    }
    int cue = lookup(s, a, b, CUES_PHONE);
    if (cue < 0) return -1;
    if (cue == CUE_NEGATIVE || (!nanp && !trunk && cue != CUE_POSITIVE)) return 0; /* (_validated: 0 then) */
    PyObject *candidate = PyUnicode_Substring(s->text, a, b);
    if (candidate == NULL) return -1;
    PyObject *found = PyObject_CallFunction(s->validated, "Oiii", candidate, nanp, trunk, cue == CUE_POSITIVE);
    Py_DECREF(candidate);
    return hook_conf(hits, s, CUES_PHONE, a, b, found);
}

/* What numbers_py yields for the item at *i (it advances *i past the items an IBAN's hit skips). */
static int item(PyObject *hits, const Scan *s, const Items *items, Py_ssize_t *i, int *positive) {
    const Item *it = &items->items[*i];
    Py_ssize_t a = it->a, b = it->b;
    int cue;
    switch (it->kind) {
    case K_NATIONAL:
        return national(hits, s, a, b, it->c, positive);
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
        PyObject *candidate = PyUnicode_Substring(s->text, a, b);
        if (candidate == NULL) return -1;
        PyObject *found = PyObject_CallFunction(s->intl, "OnnO", s->ctx, a, b, candidate);
        Py_DECREF(candidate);
        return hook_conf(hits, s, CUES_PHONE, a, b, found);
    }
    case K_PHONE_AT:
        return hook_hit(hits, PyObject_CallFunction(s->phone_at, "OOnn", s->text, s->ctx, a, b)) < 0 ? -1 : 0;
    case K_IBAN: {
        int r = hook_hit(hits, PyObject_CallFunction(s->iban_at, "On", s->text, a));
        if (r == 1) /* the rest of the cluster is not looked at (an IBAN holds no other number) */
            *i += b < items->len - 1 - *i ? b : items->len - 1 - *i;
        return r < 0 ? -1 : 0;
    }
    default: { /* K_IPV6 */
        PyObject *found = PyObject_CallFunction(s->ipv6_at, "Onn", s->text, a, b);
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
    }
}

/* numbers(text, classes, key, headers, ctx, hooks) -> [(type, start, end, confidence), ...]: numbers_py's hits. */
PyObject *py_numbers(PyObject *self, PyObject *args) {
    Scan s;
    if (read_scan(args, &s, NULL, NULL, NULL) < 0) return NULL;
    Items items = {NULL, 0, 0};
    PyObject *hits = plan_items(&s.t, &items, &s.consts) < 0 ? NULL : PyList_New(0);
    int positive = -1; /* Context.phone_may_be_positive(), asked once when a national number needs it */
    for (Py_ssize_t i = 0; hits != NULL && i < items.len; i++)
        if (item(hits, &s, &items, &i, &positive) < 0) Py_CLEAR(hits);
    PyMem_Free(items.items);
    return hits;
}
