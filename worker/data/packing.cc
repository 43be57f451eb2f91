#include "worker/data/packing.h"

#include <algorithm>
#include <deque>
#include <map>
#include <numeric>

namespace distill::worker {

PackedRows PackBestFitDecreasing(const std::vector<int64_t>& sizes, int64_t capacity) {
  std::vector<int64_t> order(sizes.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return sizes[a] > sizes[b]; });

  PackedRows rows;
  // Free room -> the open rows with that much room, first come first served
  // (as TRL's space_to_bin deques). Full rows are not kept.
  std::map<int64_t, std::deque<int64_t>> by_room;
  for (int64_t item : order) {
    const int64_t size = sizes[item];
    int64_t row;
    int64_t room;
    auto fit = by_room.lower_bound(size);
    if (fit == by_room.end()) {
      row = static_cast<int64_t>(rows.size());
      rows.emplace_back();
      room = capacity;
    } else {
      room = fit->first;
      row = fit->second.front();
      fit->second.pop_front();
      if (fit->second.empty()) by_room.erase(fit);
    }
    rows[row].push_back(item);
    if (room - size > 0) by_room[room - size].push_back(row);
  }
  return rows;
}

PackedRows OnePerRow(int64_t count) {
  PackedRows rows(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) rows[i].push_back(i);
  return rows;
}

}  // namespace distill::worker
