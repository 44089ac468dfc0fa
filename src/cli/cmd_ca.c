#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "core/ca.h"

static const char usage[] =
    "usage: reel ca [--path] [--json]\n"
    "\n"
    "Shows reel's CA certificate (created on first use in $XDG_DATA_HOME/reel,\n"
    "key file 0600), its fingerprint, and how to make clients trust it so that\n"
    "HTTPS through the proxy can be intercepted.\n"
    "\n"
    "  --path   print only the certificate's path (for scripts; with --json,\n"
    "           {\"path\": ...})\n"
    "  --json   path, SHA-256 fingerprint, PEM and whether it was just created\n";

int reel_cmd_ca(reel_cli_t *cli, int argc, char **argv) {
    static const struct option opts[] = {{"path", no_argument, NULL, 'p'}, REEL_CLI_COMMON_OPTS,
                                         {0}};
    int path_only = 0, c;
    while ((c = reel_cli_getopt(argc, argv, "hp", opts)) != -1) {
        if (c == 'p') {
            path_only = 1;
            continue;
        }
        int rc = reel_cli_common_opt(cli, c, usage);
        if (rc >= 0)
            return rc;
    }
    if (optind != argc)
        return reel_cli_usage(cli, "unexpected argument '%s'", argv[optind]);
    char *dir = reel_cli_data_dir();
    reel_err_t err;
    reel_err_clear(&err);
    reel_ca_t *ca = NULL;
    reel_rc rc = reel_ca_open(dir, &ca, &err);
    free(dir);
    if (rc != REEL_OK)
        return reel_cli_fail(cli, "%s", reel_err_str(&err));
    for (const char *w = reel_ca_warning(ca); w && *w;) {
        size_t n = strcspn(w, "\n");
        fprintf(stderr, "reel: WARNING: %.*s\n", (int)n, w);
        w += n + (w[n] == '\n');
    }
    const char *path = reel_ca_cert_path(ca);
    if (path_only && cli->json) {
        reel_cli_json_out(json_pack("{s:s}", "path", path));
    } else if (path_only) {
        printf("%s\n", path);
    } else if (cli->json) {
        reel_cli_json_out(json_pack("{s:s, s:s, s:s, s:b}", "path", path, "sha256",
                                    reel_ca_fingerprint(ca), "pem", reel_ca_pem(ca), "created",
                                    reel_ca_created(ca)));
    } else {
        if (reel_ca_created(ca))
            printf("created a new CA for this user\n\n");
        char *word = reel_shell_word(path);
        printf("certificate  %s\n"
               "SHA-256      %s\n"
               "\n"
               "Trust it, once per client:\n"
               "  curl         curl --cacert %s -x http://127.0.0.1:8080 https://example.com/\n"
               "  Python       SSL_CERT_FILE=%s (ssl, urllib); REQUESTS_CA_BUNDLE for requests\n"
               "  Chromium     certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n reel -i %s\n"
               "               (certutil is in Debian's libnss3-tools)\n"
               "  Firefox      Settings > Privacy & Security > Certificates > Import\n"
               "  Debian       sudo cp %s /usr/local/share/ca-certificates/reel-ca.crt &&\n"
               "               sudo update-ca-certificates\n"
               "\n"
               "Anyone holding the key next to it can intercept what those clients send:\n"
               "keep it private, and remove the CA from clients you stop testing with.\n"
               "\n%s",
               path, reel_ca_fingerprint(ca), word, word, word, word, reel_ca_pem(ca));
        free(word);
    }
    reel_ca_free(ca);
    return REEL_EXIT_OK;
}
