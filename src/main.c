#include "cli/cli.h"

int main(int argc, char **argv) {
    return reel_cli_main(argc, argv);
}
