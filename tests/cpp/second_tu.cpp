// A second translation unit including the header: inline definitions must not clash at
// link time (ODR), and the types must be usable from both units.
#include "loradock.hpp"

std::string second_tu_version() { return loradock::version(); }

loradock::Error second_tu_error() { return loradock::Error(LORADOCK_STATUS_BUSY, "from the second unit"); }
