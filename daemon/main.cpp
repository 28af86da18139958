// extmemd: a thin main over the daemon library.
#include <malloc.h>

#include <cstdio>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "config/options.hpp"
#include "daemon.hpp"
#include "extmem/kernel/probe.hpp"

int main(int argc, char** argv) {
  using namespace extmem;
  // Swap-in read buffers (up to 1 MiB each) are allocated and freed at I/O rates. glibc
  // raises its mmap threshold past freed ones and then keeps them in its heaps: 77 MiB of
  // RSS after a sequential read, against 25 MiB with buffers this large always mapped
  // and returned to the kernel when freed.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  daemon::OptionsErrorSource error_source = daemon::OptionsErrorSource::kCommandLine;
  auto options =
      daemon::load_options(std::vector<std::string>(argv + 1, argv + argc), &error_source);
  if (!options) {
    fprintf(stderr, "extmemd: %s\n", options.error().context());
    return error_source == daemon::OptionsErrorSource::kConfigFile ? 1 : 2;
  }
  if (options->show_help) {
    fputs(daemon::usage().c_str(), stdout);
    return 0;
  }
  if (options->show_version) {
    printf("extmemd %s\n", EXTMEM_VERSION);
    return 0;
  }
  if (options->check_config) {
    const std::string summary = daemon::describe_options(*options);
    if (options->config_path.empty()) {
      printf("extmemd: no config file (%s does not exist), the defaults are in use: %s\n",
             daemon::kDefaultConfigPath, summary.c_str());
    } else {
      printf("%s: ok (%s)\n", options->config_path.c_str(), summary.c_str());
    }
    return 0;
  }

  kernel::Capabilities caps = kernel::probe_kernel();
  if (options->probe_only) {
    fputs(kernel::format_capabilities(caps).c_str(), stdout);
    return caps.all_required_present() ? 0 : 1;
  }

  // Logs go to stderr (the journal under systemd); stdout stays free for --probe.
  spdlog::set_default_logger(spdlog::stderr_color_mt("extmemd"));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(options->log_level));
  if (!caps.all_required_present()) {
    std::string missing;
    for (const auto& name : caps.missing_required()) missing += " " + name;
    spdlog::critical("the kernel lacks what extmem needs:{} (run extmemd --probe)", missing);
    return 1;
  }
  spdlog::info("extmemd {} starting; kernel swap {}", EXTMEM_VERSION,
               caps.kernel_swap_on ? "on" : "off");

  daemon::block_daemon_signals();
  daemon::Daemon d(std::move(*options), std::vector<std::string>(argv + 1, argv + argc), caps,
                   EXTMEM_VERSION);
  if (auto ran = d.run(); !ran) {
    spdlog::critical("{}", ran.error().message());
    return 1;
  }
  return 0;
}
