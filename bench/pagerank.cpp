// extmem-pagerank: pull-based PageRank over a generated power-law graph, the workload of
// ExtMem's PageRank policy. Every array is allocated with plain malloc, so under the shim
// it lives in the extmem arena.
//
// The graph is Chung-Lu-like: vertex v gets a Pareto-distributed in-degree (exponent 2.5,
// mean about --avg-degree), and each in-edge a source drawn with density ~ x^(-2/3) over a
// scrambled vertex order, so a few vertices are sources of many edges. Edges are stored
// as CSR by destination (offsets, edges), generated in destination order so building the
// graph is one sequential pass. Each iteration scans rank and out-degree sequentially
// (contributions), then offsets, edges and rank sequentially while reading contributions
// at random: the mix of streams and random accesses the frontier policy is built for.
//
// The result depends only on --vertices, --avg-degree, --iterations and --seed, never on
// --threads: per-vertex sums run in edge order and the dangling mass is summed over fixed
// blocks in order.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"

namespace {

using extmem::bench::die;
using extmem::bench::parse_count;

void usage(FILE* out) {
  fputs(
      "usage: extmem-pagerank [options]\n"
      "  --vertices N      vertices (default 1000000)\n"
      "  --avg-degree D    mean in-degree (default 16)\n"
      "  --iterations K    PageRank iterations (default 5)\n"
      "  --seed S          graph seed (default 1)\n"
      "  --threads T       worker threads (default 1)\n"
      "Prints the graph's memory footprint, one line per iteration (\"iteration I: SECONDS "
      "s\"),\nthen the checksum (sum of ranks, and a position-weighted sum).\n",
      out);
}

struct Args {
  uint64_t vertices = 1000000;
  uint64_t avg_degree = 16;
  uint64_t iterations = 5;
  uint64_t seed = 1;
  uint64_t threads = 1;
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      usage(stdout);
      exit(0);
    }
    if (i + 1 >= argc) die("%s needs a value (see --help)", arg.c_str());
    const char* v = argv[++i];
    if (arg == "--vertices") {
      a.vertices = parse_count("--vertices", v, 2, uint64_t{1} << 32);
    } else if (arg == "--avg-degree") {
      a.avg_degree = parse_count("--avg-degree", v, 1, 1000);
    } else if (arg == "--iterations") {
      a.iterations = parse_count("--iterations", v, 1, 1000);
    } else if (arg == "--seed") {
      a.seed = parse_count("--seed", v, 0, UINT64_MAX);
    } else if (arg == "--threads") {
      a.threads = parse_count("--threads", v, 1, 256);
    } else {
      die("unknown option '%s' (see --help)", arg.c_str());
    }
  }
  return a;
}

// splitmix64: a good 64-bit mix, used both as a counter-based generator and a hash.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

double unit(uint64_t bits) {  // (0, 1]
  return static_cast<double>((bits >> 11) + 1) * 0x1.0p-53;
}

template <typename T>
T* alloc_array(uint64_t count, const char* what) {
  void* p = malloc(count * sizeof(T));
  if (p == nullptr) die("cannot allocate %s (%" PRIu64 " bytes)", what, count * sizeof(T));
  return static_cast<T*>(p);
}

// Runs body(first, last) over [0, n) split into `threads` contiguous parts.
template <typename F>
void parallel_for(uint64_t n, uint64_t threads, const std::vector<uint64_t>* bounds, F body) {
  std::vector<std::thread> workers;
  for (uint64_t t = 0; t < threads; ++t) {
    const uint64_t first = bounds ? (*bounds)[t] : n * t / threads;
    const uint64_t last = bounds ? (*bounds)[t + 1] : n * (t + 1) / threads;
    if (t + 1 == threads) {
      body(first, last);
    } else {
      workers.emplace_back(body, first, last);
    }
  }
  for (auto& w : workers) w.join();
}

struct Graph {
  uint64_t n = 0;
  uint64_t m = 0;
  uint64_t* offsets = nullptr;  // n + 1: in-edges of v are edges[offsets[v], offsets[v+1])
  uint32_t* edges = nullptr;    // sources, ascending per destination
  uint32_t* out_degree = nullptr;
};

Graph generate(const Args& a) {
  Graph g;
  g.n = a.vertices;
  const uint64_t n = g.n;
  const uint64_t max_degree = std::min<uint64_t>(n - 1, 1000 * a.avg_degree);
  // Pareto with shape 1.5 has mean 3 * scale.
  const double scale = static_cast<double>(a.avg_degree) / 3.0;
  auto in_degree = [&](uint64_t v) {
    const double d = scale * std::pow(unit(mix(a.seed * 0x100000001b3ULL ^ v)), -2.0 / 3.0);
    return std::min<uint64_t>(static_cast<uint64_t>(d + 0.5), max_degree);
  };
  g.offsets = alloc_array<uint64_t>(n + 1, "offsets");
  g.offsets[0] = 0;
  for (uint64_t v = 0; v < n; ++v) g.offsets[v + 1] = g.offsets[v] + in_degree(v);
  g.m = g.offsets[n];
  if (g.m > (uint64_t{1} << 40)) die("the graph would have %" PRIu64 " edges", g.m);
  g.edges = alloc_array<uint32_t>(g.m, "edges");
  g.out_degree = alloc_array<uint32_t>(n, "out-degrees");
  memset(g.out_degree, 0, n * sizeof(uint32_t));

  // Popular sources are spread over the id space by an affine permutation.
  uint64_t stride = (mix(a.seed) % n) | 1;
  while (std::gcd(stride, n) != 1) stride += 2;
  const uint64_t shift = mix(a.seed + 1) % n;
  const uint64_t threads = a.threads;
  const double dn = static_cast<double>(n);
  parallel_for(n, threads, nullptr, [&](uint64_t first, uint64_t last) {
    for (uint64_t v = first; v < last; ++v) {
      uint32_t* list = g.edges + g.offsets[v];
      const uint64_t degree = g.offsets[v + 1] - g.offsets[v];
      for (uint64_t i = 0; i < degree; ++i) {
        const double x = unit(mix((a.seed << 40) ^ (g.offsets[v] + i) ^ 0x5eedULL));
        const uint64_t rank = std::min(n - 1, static_cast<uint64_t>(dn * x * x * x));
        list[i] = static_cast<uint32_t>((rank * stride + shift) % n);
      }
      std::sort(list, list + degree);
    }
  });
  for (uint64_t e = 0; e < g.m; ++e) ++g.out_degree[g.edges[e]];
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  if (a.vertices > (uint64_t{1} << 32)) die("--vertices is at most 2^32");
  const auto t0 = std::chrono::steady_clock::now();
  Graph g = generate(a);
  const uint64_t n = g.n;
  double* rank = alloc_array<double>(n, "ranks");
  double* contrib = alloc_array<double>(n, "contributions");
  const uint64_t bytes = (n + 1) * sizeof(uint64_t) + g.m * sizeof(uint32_t) +
                         n * (sizeof(uint32_t) + 2 * sizeof(double));
  const double gen_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("graph: %" PRIu64 " vertices, %" PRIu64 " edges, memory %" PRIu64
         " bytes (%.1f MiB), "
         "generated in %.2f s\n",
         n, g.m, bytes, static_cast<double>(bytes) / (1 << 20), gen_s);
  fflush(stdout);

  const double damping = 0.85;
  const double dn = static_cast<double>(n);
  for (uint64_t v = 0; v < n; ++v) rank[v] = 1.0 / dn;

  // Threads split the vertices so that each gets about the same number of edges.
  std::vector<uint64_t> bounds(a.threads + 1, n);
  bounds[0] = 0;
  for (uint64_t t = 1; t < a.threads; ++t) {
    bounds[t] = static_cast<uint64_t>(
        std::lower_bound(g.offsets, g.offsets + n, g.m * t / a.threads) - g.offsets);
  }
  constexpr uint64_t kBlock = 1 << 16;
  std::vector<double> dangling((n + kBlock - 1) / kBlock);

  for (uint64_t it = 1; it <= a.iterations; ++it) {
    const auto start = std::chrono::steady_clock::now();
    parallel_for(dangling.size(), a.threads, nullptr, [&](uint64_t first, uint64_t last) {
      for (uint64_t b = first; b < last; ++b) {
        double lost = 0;
        for (uint64_t u = b * kBlock; u < std::min(n, (b + 1) * kBlock); ++u) {
          if (g.out_degree[u] == 0) {
            lost += rank[u];
            contrib[u] = 0;
          } else {
            contrib[u] = rank[u] / g.out_degree[u];
          }
        }
        dangling[b] = lost;
      }
    });
    double lost = 0;
    for (const double d : dangling) lost += d;
    const double base = (1.0 - damping) / dn + damping * lost / dn;
    parallel_for(n, a.threads, &bounds, [&](uint64_t first, uint64_t last) {
      for (uint64_t v = first; v < last; ++v) {
        double sum = 0;
        for (uint64_t e = g.offsets[v]; e < g.offsets[v + 1]; ++e) sum += contrib[g.edges[e]];
        rank[v] = base + damping * sum;
      }
    });
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    printf("iteration %" PRIu64 ": %.3f s\n", it, s);
    fflush(stdout);
  }

  double sum = 0;
  double weighted = 0;
  for (uint64_t v = 0; v < n; ++v) {
    sum += rank[v];
    weighted += rank[v] * static_cast<double>(v % 1024 + 1);
  }
  printf("checksum: sum=%.12f weighted=%.12f\n", sum, weighted);
  free(rank);
  free(contrib);
  free(g.offsets);
  free(g.edges);
  free(g.out_degree);
  return 0;
}
