/* Differences between two flows (`reel diff`): a line diff (Myers) with
 * unified output as GNU `diff -u` writes it, header comparison by name
 * (case-insensitive, multi-valued), and the flow side: heads, error and
 * bodies decoded (Content-Encoding) and pretty-printed through the
 * contentviews (view.h), ready to be diffed line by line.
 *
 * Bounded: a body is looked at up to REEL_VIEW_MAX bytes (stored and
 * decoded), a view up to REEL_DIFF_VIEW_MAX bytes and the line diff up to
 * max_lines lines a side and max_d differences; what is cut is said (cut,
 * rough), never silently dropped. */
#ifndef REEL_SESSION_DIFF_H
#define REEL_SESSION_DIFF_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/mem.h"
#include "session/recorder.h"
#include "session/session.h"

/* ---- line diff ---- */

/** Most lines of each side the line diff looks at by default (line numbers
 * then fit the diff's 32-bit trace). */
#define REEL_DIFF_MAX_LINES 50000
/** Most differences (lines deleted + added) it searches a minimal script
 * for by default; past that the differing middle is shown replaced whole. */
#define REEL_DIFF_MAX_D 2000
/** Most bytes of a pretty-printed body kept for the diff. */
#define REEL_DIFF_VIEW_MAX ((size_t)16 * 1024 * 1024)

typedef enum { REEL_DIFF_EQ = 0, REEL_DIFF_DEL, REEL_DIFF_ADD } reel_diff_op;

/** One line of an edit script. p points into the text diffed (borrowed). */
typedef struct {
    reel_diff_op op;
    const char *p;
    size_t len;  /* without its '\n' */
    int nonl;    /* the text's last line, with no '\n' after it */
    size_t a, b; /* 0-based line numbers in a and b (the side's next line for ADD/DEL) */
} reel_diff_line_t;

typedef struct {
    reel_diff_line_t *v; /* owned */
    size_t n;
    size_t changes; /* lines deleted + added */
    int cut;        /* a side had more than max_lines lines: the rest was left out */
    int rough;      /* more than max_d differences: not a minimal script */
} reel_diff_t;

/** Diffs the lines of a[0..alen) and b[0..blen) (each line ends at '\n';
 * a last line without one is a line too, different from the same text with
 * one). Fills out (release with reel_diff_free); never fails (allocation
 * aborts). max_lines, max_d 0 = the defaults. */
void reel_diff_lines(const char *a, size_t alen, const char *b, size_t blen, size_t max_lines,
                     size_t max_d, reel_diff_t *out);

/** Frees what d holds; accepts NULL. */
void reel_diff_free(reel_diff_t *d);

/** Appends the hunks of d to out as `diff -u` writes them after its two
 * header lines: "@@ -l,n +l,n @@", context lines starting ' ', deleted
 * '-', added '+', "\ No newline at end of file" after a last line without
 * one; `context` lines around each change (3 in diff -u). Nothing for a d
 * without changes. */
void reel_diff_unified(const reel_diff_t *d, unsigned context, reel_buf_t *out);

/* ---- headers ---- */

/** One header name whose values differ: in a only (removed), in b only
 * (added) or in both with different values (changed). Values in order. */
typedef struct {
    char *name; /* as first written (a's spelling if a has it); owned */
    char **a;   /* owned strings */
    size_t na;
    char **b;
    size_t nb;
} reel_diff_header_t;

/** The header names whose value lists differ between a and b, names
 * compared case-insensitively, values exactly and in order; in the order
 * the names first appear (a's, then those only b has). Returns an owned
 * array of *n entries (NULL when none): free with reel_diff_headers_free. */
reel_diff_header_t *reel_diff_headers(const reel_header_t *a, size_t na, const reel_header_t *b,
                                      size_t nb, size_t *n);
void reel_diff_headers_free(reel_diff_header_t *v, size_t n);

/* ---- flows ---- */

/** What a flow diff compares of one direction. */
typedef struct {
    int present;            /* the flow has this head */
    reel_header_t *headers; /* owned (strings too) */
    size_t n_headers;
    uint64_t body_size;    /* stored bytes */
    uint64_t wire_size;    /* bytes the body had on the wire, as sent (before decoding): the
                              end or error record's size, at least body_size */
    int partial;           /* the stored body is (or may be) only a prefix of the wire's */
    const char *partial_why; /* static, NULL when whole: why, as the flow's records say
                                ("body_limit cut it", "the flow has not ended", ...) */
    char *coding;            /* Content-Encoding of the stored bytes (owned; NULL: none, or
                                stored decoded): wire sizes compare only under the same one */
    reel_buf_t body;       /* decoded body, at most REEL_VIEW_MAX bytes */
    int body_cut;          /* more was stored, or decoded, than kept */
    char *decode_error;    /* owned; the Content-Encoding failed: body holds the stored bytes */
    reel_buf_t view;       /* the body pretty-printed (auto view), at most REEL_DIFF_VIEW_MAX */
    const char *view_kind; /* name of the view shown ("json", "raw", "hex", ...) */
} reel_diff_dir_t;

typedef struct {
    uint64_t id;
    char *method, *url, *reason, *error; /* owned; NULL when absent */
    uint32_t status;                     /* 0: no response */
    reel_diff_dir_t dir[2];              /* 0 request, 1 response */
} reel_diff_flow_t;

/** What the stored bodies of one direction of two flows say about the
 * bodies sent. */
typedef enum {
    REEL_DIFF_BODY_SAME = 0, /* both stored whole, the same once decoded */
    REEL_DIFF_BODY_DIFFERS,  /* known to differ (in what was stored, or in size) */
    REEL_DIFF_BODY_UNKNOWN,  /* a side not stored whole, and what was stored of both agrees */
} reel_diff_body_verdict;

typedef struct {
    reel_diff_body_verdict verdict;
    int bytes_same;  /* decoded bytes compared are the same */
    int views_same;  /* their pretty-printed forms are the same (view_a, view_b) */
    size_t compared; /* decoded bytes of each side compared: all, or, when a side is partial,
                        the bytes both hold */
    reel_buf_t view_a, view_b;   /* the views diffed: owned, rendered from the first
                                    `compared` bytes when a side is partial */
    const char *kind_a, *kind_b; /* their view names */
} reel_diff_body_t;

/** Compares the bodies of a and b (one direction of two loaded flows) into
 * out (free with reel_diff_body_free). Whole bodies are compared whole; when
 * a side is partial only the decoded bytes both hold are compared (nothing
 * past the stored prefix is taken for a change), and the bodies still
 * differ when their wire sizes do (under the same Content-Encoding) or a
 * whole side is shorter than what the other stored. */
void reel_diff_body_compare(const reel_diff_dir_t *a, const reel_diff_dir_t *b,
                            reel_diff_body_t *out);
void reel_diff_body_free(reel_diff_body_t *b);

/** Writes into buf why d's body is partial, for people: "cut by body_limit
 * at 10 of 29 bytes", "not stored whole (10 of 29 bytes): capture fell
 * behind the disk", ...; "" when it is whole. */
void reel_diff_partial_str(const reel_diff_dir_t *d, char *buf, size_t cap);

/** Reads flow `id` of s into out (zeroed first; free with
 * reel_diff_flow_free, also after an error). REEL_NOTFOUND ("no flow N in
 * session 'S'"), or the store's errors. */
reel_rc reel_diff_flow_load(reel_session_t *s, uint64_t id, reel_diff_flow_t *out, reel_err_t *err);
void reel_diff_flow_free(reel_diff_flow_t *f);

#endif
