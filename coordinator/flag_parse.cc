#include "coordinator/flag_parse.h"

#include <algorithm>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace distill::coordinator {
namespace {

std::string Dashed(absl::string_view name) { return absl::StrReplaceAll(name, {{"_", "-"}}); }

// The flag `name` (dashes or underscores) if `defined_in` defines it.
absl::CommandLineFlag* OwnFlag(absl::string_view name, absl::string_view defined_in) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(absl::StrReplaceAll(name, {{"-", "_"}}));
  if (flag == nullptr || !absl::EndsWith(flag->Filename(), defined_in)) return nullptr;
  return flag;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseFlags(const std::vector<std::string>& args,
                                                    absl::string_view defined_in,
                                                    std::set<std::string>* given) {
  std::vector<std::string> rest;
  std::set<std::string> seen;  // flags set by this call (an ArgList appends)
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!absl::StartsWith(arg, "--") || arg.size() == 2) {
      rest.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    const size_t eq = name.find('=');
    const bool has_value = eq != std::string::npos;
    if (has_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    absl::CommandLineFlag* flag = OwnFlag(name, defined_in);
    if (flag == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
    if (!has_value) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
    }
    if (flag->IsOfType<ArgList>() && !seen.insert(std::string(flag->Name())).second) {
      value = absl::StrCat(flag->CurrentValue(), "\n", value);
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": ", error));
    }
    if (given != nullptr) given->insert(std::string(flag->Name()));
  }
  return rest;
}

std::string FlagsHelp(absl::string_view usage_line, absl::string_view defined_in) {
  std::vector<const absl::CommandLineFlag*> own;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::EndsWith(flag->Filename(), defined_in)) own.push_back(flag);
  }
  std::sort(own.begin(), own.end(),
            [](const absl::CommandLineFlag* a, const absl::CommandLineFlag* b) {
              return a->Name() < b->Name();
            });
  std::string out = absl::StrCat(usage_line, "\n");
  for (const absl::CommandLineFlag* f : own) {
    const std::string default_value = f->DefaultValue();
    absl::StrAppend(&out, "  --", Dashed(f->Name()), "\n      ", f->Help(),
                    " (default: ", default_value.empty() ? "''" : default_value, ")\n");
  }
  return out;
}

bool AbslParseFlag(absl::string_view text, ArgList* list, std::string* /*error*/) {
  list->values.clear();
  if (!text.empty()) list->values = absl::StrSplit(text, '\n');
  return true;
}

std::string AbslUnparseFlag(const ArgList& list) { return absl::StrJoin(list.values, "\n"); }

bool AbslParseFlag(absl::string_view text, PositiveDuration* d, std::string* error) {
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds)) {
    d->value = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(text, &d->value)) {
    *error = "expected a duration like 30s";
    return false;
  }
  if (d->value <= absl::ZeroDuration()) {
    *error = "must be > 0";
    return false;
  }
  return true;
}

std::string AbslUnparseFlag(PositiveDuration d) { return absl::FormatDuration(d.value); }

}  // namespace distill::coordinator
