// The memory this process's host gives it: physical memory, or less where a
// cgroup (a container, a Slurm job, a Kubernetes pod) limits it. For checks
// that refuse a model or a batch that cannot fit before allocating it (Note
// [Model fits memory] in worker/model/hf_io.cc). Thread-safe.
#ifndef DISTILL_COMMON_HOST_MEMORY_H_
#define DISTILL_COMMON_HOST_MEMORY_H_

#include <cstdint>
#include <string>

namespace distill::common {

// Bytes: the least of physical memory and the cgroup v2 (memory.max) or v1
// (memory.limit_in_bytes) limit of this process's cgroup; 0 when none of them
// can be read.
int64_t HostMemoryBytes();

// A cgroup limit file's value: bytes, or 0 for "max", an unset v1 limit
// (above 2^62) or text that is not a number.
int64_t ParseCgroupLimit(const std::string& text);

// "23.4 GiB", "8.0 TiB", "512 B".
std::string HumanBytes(double bytes);

}  // namespace distill::common

#endif  // DISTILL_COMMON_HOST_MEMORY_H_
