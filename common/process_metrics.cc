#include "common/process_metrics.h"

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <vector>

#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"

namespace paragan {
namespace {

class ProcessCollectable : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    int64_t pages_total = 0, pages_resident = 0;
    std::ifstream statm("/proc/self/statm");
    statm >> pages_total >> pages_resident;
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    std::vector<prometheus::MetricFamily> out(2);
    out[0].name = "paragan_process_resident_memory_bytes";
    out[0].help = "Resident set size of this process";
    out[1].name = "paragan_process_virtual_memory_bytes";
    out[1].help = "Virtual memory size of this process";
    const double values[2] = {pages_resident * page, pages_total * page};
    for (int i = 0; i < 2; ++i) {
      out[i].type = prometheus::MetricType::Gauge;
      prometheus::ClientMetric m;
      m.gauge.value = values[i];
      out[i].metric.push_back(m);
    }
    return out;
  }
};

}  // namespace

std::shared_ptr<prometheus::Collectable> MakeProcessCollectable() {
  return std::make_shared<ProcessCollectable>();
}

}  // namespace paragan
