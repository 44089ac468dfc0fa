# Writes OUT, a C file defining reel__schema_migrations[]: the text of each
# schema/NNN_*.sql file, in order. Invoked at build time with -DOUT -DFILES.
set(body "/* generated from the schema SQL files by cmake/embed_sql.cmake */\n#include <stddef.h>\n")
set(list "const char *const reel__schema_migrations[] = {\n")
set(i 0)
foreach(f IN LISTS FILES)
  file(READ ${f} sql HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," sql "${sql}")
  string(APPEND body "static const char m${i}[] = {${sql} 0x00};\n")
  string(APPEND list "    m${i},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND list "};\nconst size_t reel__schema_migration_count = ${i};\n")
file(WRITE ${OUT} "${body}${list}")
