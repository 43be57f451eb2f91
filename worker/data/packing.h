// Packing examples into rows of a fixed number of slots: best-fit decreasing
// (TRL's default "bfd" strategy, tests/reference/hf_instruction_data.py
// checks the rows against its pack_dataset) or one example per row. Pure
// functions of their inputs: the same sizes give the same rows on every rank.
#ifndef DISTILL_WORKER_DATA_PACKING_H_
#define DISTILL_WORKER_DATA_PACKING_H_

#include <cstdint>
#include <vector>

namespace distill::worker {

// Each row lists the indices (into the `sizes` it was packed from) of its
// items, in the order they were placed.
using PackedRows = std::vector<std::vector<int64_t>>;

// Best-fit decreasing: items in decreasing size (ties in index order), each
// into the open row with the least free room that still holds it (of rows
// with equal room, the one that got to that room first), or a new row when
// none does. Rows are numbered in the order they were opened. Requires
// 1 <= sizes[i] <= capacity. O(n log n).
PackedRows PackBestFitDecreasing(const std::vector<int64_t>& sizes, int64_t capacity);

// One item per row, in index order.
PackedRows OnePerRow(int64_t count);

}  // namespace distill::worker

#endif  // DISTILL_WORKER_DATA_PACKING_H_
