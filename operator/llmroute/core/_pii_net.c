/* E-mail addresses, compiled: pii_net.emails_py step for step (from each '@' outwards).
 *
 * emails(text, not_tlds, role) -> [hit, ...]: the local part walked back over _LOCAL_CHARS (at most _LOCAL_MAX), its
 * leading ".-+%" dropped; the domain as _DOMAIN matches it (written out above domain_end); then the same refusals:
 * an empty local part, one ending in '.' or holding "..", a TLD in `not_tlds`, a local part in `role` (both
 * frozensets of lowercase str, passed from Python), a git/scp remote (host followed by ':' and a non-space), and
 * a user in a URL ("://" right before the local part).
 */
#include "_pii_native.h"

#define LOCAL_MAX 64 /* pii_net._LOCAL_MAX */

static inline int ascii_letter(Py_UCS4 ch) { return ch < 128 && (ch | 32) >= 'a' && (ch | 32) <= 'z'; }
static inline int local_char(Py_UCS4 ch) { /* pii_net._LOCAL_CHARS */
    return ascii_alnum(ch) || ch == '.' || ch == '_' || ch == '%' || ch == '+' || ch == '-';
}

/* _DOMAIN.match(text, i):
 *   (?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})(?![A-Za-z0-9_-])
 * The labels are the dot-separated segments from i: a segment is a label when it is 1-63 of [A-Za-z0-9-] with no
 * '-' at either end and a '.' after it. The greedy '+' takes as many leading labels as there are, and gives them back
 * one by one until the segment after the last one taken is a TLD: all letters, 2-24 of them, followed by none of
 * [A-Za-z0-9_-] (fewer letters would leave a letter after them). The match's end and its TLD (*tld_start), or -1. */
static Py_ssize_t domain_end(const Text *t, Py_ssize_t i, Py_ssize_t *tld_start) {
    Py_ssize_t count = 0, p = i;
    for (;;) { /* the leading labels, each followed by '.' */
        Py_ssize_t q = p;
        while (q < t->n && (ascii_alnum(at(t, q)) || at(t, q) == '-')) q++;
        if (q == p || q - p > 63 || at(t, p) == '-' || at(t, q - 1) == '-' || q >= t->n || at(t, q) != '.') break;
        count++;
        p = q + 1;
    }
    for (Py_ssize_t k = count, tld = p; k >= 1; k--) { /* k labels taken: the TLD starts after the k-th */
        Py_ssize_t e = tld;
        while (e < t->n && ascii_letter(at(t, e))) e++;
        Py_UCS4 next = e < t->n ? at(t, e) : 0;
        if (e - tld >= 2 && e - tld <= 24 && !ascii_alnum(next) && next != '_' && next != '-') {
            *tld_start = tld;
            return e;
        }
        Py_ssize_t label = tld - 1; /* the k-th label's '.': one label fewer, the TLD would start where it does */
        while (label > i && at(t, label - 1) != '.') label--;
        tld = label;
    }
    return -1;
}

/* text[a:b], lowercased (ASCII letters only: the parts looked up are ASCII), is in the frozenset `set`. */
static int lower_in(const Text *t, Py_ssize_t a, Py_ssize_t b, PyObject *set) {
    char buf[LOCAL_MAX + 8];
    if (b - a > (Py_ssize_t)sizeof buf) return 0; /* (no entry is that long) */
    for (Py_ssize_t i = a; i < b; i++) {
        Py_UCS4 ch = at(t, i);
        if (ch >= 128) return 0;
        buf[i - a] = (char)((ch >= 'A' && ch <= 'Z') ? ch + 32 : ch);
    }
    PyObject *s = PyUnicode_FromStringAndSize(buf, b - a);
    int r = s == NULL ? -1 : PySet_Contains(set, s);
    Py_XDECREF(s);
    return r;
}

/* pii_net._email_at: the end of the e-mail address around the '@' at `at` (*start its start), 0 if none there, -1
 * with an exception set. */
static Py_ssize_t email_at(const Text *t, Py_ssize_t at_, PyObject *not_tlds, PyObject *role, Py_ssize_t *start) {
    Py_ssize_t s = at_, tld;
    while (s > 0 && at_ - s < LOCAL_MAX && local_char(at(t, s - 1))) s--;
    while (s < at_ && (at(t, s) == '.' || at(t, s) == '-' || at(t, s) == '+' || at(t, s) == '%')) s++;
    Py_ssize_t end = domain_end(t, at_ + 1, &tld);
    if (s == at_ || end < 0 || at(t, at_ - 1) == '.') return 0;
    for (Py_ssize_t i = s; i + 1 < at_; i++)
        if (at(t, i) == '.' && at(t, i + 1) == '.') return 0;
    int r = lower_in(t, tld, end, not_tlds);
    if (r == 0) r = lower_in(t, s, at_, role);
    if (r != 0) return r < 0 ? -1 : 0;
    if (end + 1 < t->n && at(t, end) == ':' && !Py_UNICODE_ISSPACE(at(t, end + 1))) return 0; /* a git remote */
    if (s > 2 && at(t, s - 3) == ':' && at(t, s - 2) == '/' && at(t, s - 1) == '/') return 0; /* scheme://user@ */
    *start = s;
    return end;
}

int emails_into(PyObject *hits, PyObject *text, PyObject *not_tlds, PyObject *role) {
    Text t = {NULL, PyUnicode_GET_LENGTH(text), PyUnicode_KIND(text), PyUnicode_DATA(text)};
    Py_ssize_t at_ = PyUnicode_FindChar(text, '@', 0, t.n, 1);
    while (at_ >= 0) {
        Py_ssize_t start = 0, end = email_at(&t, at_, not_tlds, role, &start);
        if (end < 0) return -1;
        if (end > 0) {
            PyObject *h = Py_BuildValue("(snnd)", "email", start, end, 0.95);
            int r = h == NULL ? -1 : PyList_Append(hits, h);
            Py_XDECREF(h);
            if (r < 0) return -1;
        }
        at_ = PyUnicode_FindChar(text, '@', end > 0 ? end : at_ + 1, t.n, 1);
    }
    return at_ == -2 ? -1 : 0;
}

/* emails(text, not_tlds, role) -> [hit, ...]: pii_net.emails_py's hits. */
PyObject *py_emails(PyObject *self, PyObject *args) {
    PyObject *text, *not_tlds, *role;
    if (!PyArg_ParseTuple(args, "UO!O!", &text, &PyFrozenSet_Type, &not_tlds, &PyFrozenSet_Type, &role)) return NULL;
    PyObject *hits = PyList_New(0);
    if (hits != NULL && emails_into(hits, text, not_tlds, role) < 0) Py_CLEAR(hits);
    return hits;
}
