/* `reel --version`: what was built, from which commit, against what. */
#ifndef REEL_CLI_VERSION_H
#define REEL_CLI_VERSION_H

#include <stdio.h>

/** Writes reel's version and commit, then one line per library with the
 * version the running process actually uses (asked of the library at run
 * time where it can say; llhttp is compiled in). */
void reel_cli_version(FILE *out);

#endif
