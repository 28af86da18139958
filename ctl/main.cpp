// extmemctl: a thin main over the extmemctl library.
#include <string>
#include <vector>

#include "commands.hpp"

int main(int argc, char** argv) {
  return extmem::ctl::extmemctl_main(std::vector<std::string>(argv + 1, argv + argc));
}
