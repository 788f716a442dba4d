#include "cli/args.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <optional>
#include <sstream>
#include <type_traits>

#include "kernels/isa.h"

namespace bifurcate::cli {
namespace {

std::string_view value_placeholder(const auto& target) {
  struct {
    std::string_view operator()(std::string*) const { return "TEXT"; }
    std::string_view operator()(int64_t*) const { return "INT"; }
    std::string_view operator()(uint64_t*) const { return "N"; }
    std::string_view operator()(double*) const { return "NUMBER"; }
    std::string_view operator()(bool*) const { return ""; }
    std::string_view operator()(std::vector<std::string>*) const { return "TEXT"; }
  } visitor;
  return std::visit(visitor, target);
}

enum class Parsed { kOk, kMalformed, kOutOfRange };

template <class Int>
Parsed parse_integer(std::string_view text, Int& out) {
  if (text.empty() || (std::is_unsigned_v<Int> && text.front() == '-')) return Parsed::kMalformed;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (end != text.data() + text.size()) return Parsed::kMalformed;
  if (ec == std::errc::result_out_of_range) return Parsed::kOutOfRange;
  return ec == std::errc() ? Parsed::kOk : Parsed::kMalformed;
}

Parsed parse_double(std::string_view text, double& out) {
  // strtod (not from_chars) for "1e-5"/"inf" portability; it needs a terminated copy.
  std::string copy(text);
  if (copy.empty() || std::isspace(static_cast<unsigned char>(copy.front()))) return Parsed::kMalformed;
  char* end = nullptr;
  errno = 0;
  out = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size()) return Parsed::kMalformed;
  return errno == 0 ? Parsed::kOk : Parsed::kOutOfRange;
}

Parsed parse_bool(std::string_view text, bool& out) {
  if (text == "true" || text == "1" || text == "yes") return out = true, Parsed::kOk;
  if (text == "false" || text == "0" || text == "no") return out = false, Parsed::kOk;
  return Parsed::kMalformed;
}

std::vector<std::string> split_names(std::string_view names) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t bar = names.find('|', start);
    out.emplace_back(
        names.substr(start, bar == std::string_view::npos ? std::string_view::npos : bar - start));
    if (bar == std::string_view::npos) return out;
    start = bar + 1;
  }
}

std::string describe_range(const IntRange& r) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min(), kMax = std::numeric_limits<int64_t>::max();
  if (r.min == kMin && r.max == kMax) return "";
  if (r.max == kMax) return str(">= ", r.min);
  if (r.min == kMin) return str("<= ", r.max);
  return str("[", r.min, ", ", r.max, "]");
}

std::string describe_range(const RealRange& r) {
  const bool low = std::isfinite(r.min), high = std::isfinite(r.max);
  if (!low && !high) return "finite";
  if (!high) return str(r.min_exclusive ? "> " : ">= ", r.min);
  if (!low) return str("<= ", r.max);
  return str(r.min_exclusive ? "(" : "[", r.min, ", ", r.max, "]");
}

bool in_range(double value, const RealRange& r) {
  if (std::isnan(value)) return false;
  if (r.min_exclusive ? !(value > r.min) : !(value >= r.min)) return false;
  return value <= r.max;
}

}  // namespace

std::string version_text() {
  const kernels::Isa isa = kernels::active_isa(), cpu = kernels::cpu_isa();
  return str("bifurcate ", BIFURCATE_VERSION,
             " (CPU inference with bifurcated attention; flags follow llama.cpp where it has them)\n",
             "kernels: ", kernels::isa_name(isa),
             isa == cpu ? " (the widest this CPU runs" : str(" (forced by BIFURCATE_ISA; this CPU runs up to ", kernels::isa_name(cpu)),
             "; BIFURCATE_ISA=avx2|avx512|avx512vnni picks a narrower one)");
}

FlagParser::FlagParser(std::string_view command, std::string_view summary)
    : command_(command), summary_(summary) {}

void FlagParser::add_flag(std::string_view names, const Alias& alias, std::string_view help, Need need,
                          Target target, Range range, std::string default_text) {
  std::vector<std::string> long_names = split_names(names);
  // Declarations are code, not input: a clash is a programming error, still reported plainly.
  for (const Flag& f : flags_) {
    for (const std::string& n : long_names) {
      require(std::find(f.names.begin(), f.names.end(), n) == f.names.end(), "command '", command_,
              "' declares flag --", n, " twice");
    }
    require(alias.text.empty() || f.alias != alias.text, "command '", command_, "' declares alias -",
            alias.text, " twice");
  }
  for (const std::string& n : long_names) {
    require(!n.empty() && n != "help" && n != "version", "command '", command_, "': --", n,
            " is reserved or empty");
  }
  require(alias.text != "h", "command '", command_, "': -h is reserved");
  flags_.push_back(
      {std::move(long_names), alias.text, std::string(help), need, target, range, std::move(default_text)});
}

void FlagParser::operator()(std::string& value, std::string_view names, Alias alias, std::string_view help,
                            Need need) {
  add_flag(names, alias, help, need, &value, {}, value.empty() ? "" : str('"', value, '"'));
}
void FlagParser::operator()(int64_t& value, std::string_view names, Alias alias, std::string_view help,
                            Need need) {
  add_flag(names, alias, help, need, &value, {}, str(value));
}
void FlagParser::operator()(int64_t& value, std::string_view names, Alias alias, std::string_view help,
                            IntRange range) {
  add_flag(names, alias, help, Need::kOptional, &value, range, str(value));
}
void FlagParser::operator()(uint64_t& value, std::string_view names, Alias alias, std::string_view help,
                            Need need) {
  add_flag(names, alias, help, need, &value, {}, str(value));
}
void FlagParser::operator()(double& value, std::string_view names, Alias alias, std::string_view help,
                            Need need) {
  add_flag(names, alias, help, need, &value, {}, str(value));
}
void FlagParser::operator()(double& value, std::string_view names, Alias alias, std::string_view help,
                            RealRange range) {
  add_flag(names, alias, help, Need::kOptional, &value, range, str(value));
}
void FlagParser::operator()(bool& value, std::string_view names, Alias alias, std::string_view help) {
  add_flag(names, alias, help, Need::kOptional, &value, {}, value ? "true" : "false");
}
void FlagParser::operator()(std::vector<std::string>& values, std::string_view names, Alias alias,
                            std::string_view help) {
  add_flag(names, alias, help, Need::kOptional, &values, {}, "");
}

void FlagParser::positional(std::string& value, std::string_view name, std::string_view help) {
  positionals_.push_back({std::string(name), std::string(help), &value});
}

void FlagParser::positional_list(std::vector<std::string>& values, std::string_view name,
                                 std::string_view help) {
  require(positional_list_ == nullptr, "command '", command_, "' declares two positional lists");
  positional_list_ = &values;
  positional_list_name_ = name;
  positional_list_help_ = help;
}

void FlagParser::moved(std::string_view spelled, std::string_view use_instead) {
  moved_.emplace_back(std::string(spelled), std::string(use_instead));
}

FlagParser::Flag* FlagParser::find_flag(std::string_view spelled) {
  for (Flag& f : flags_) {
    if (spelled.starts_with("--")) {
      if (std::find(f.names.begin(), f.names.end(), spelled.substr(2)) != f.names.end()) return &f;
    } else if (!f.alias.empty() && spelled.substr(1) == f.alias) {
      return &f;
    }
  }
  return nullptr;
}

bool FlagParser::given(std::string_view name) const {
  for (const Flag& f : flags_) {
    if (f.names.front() == name) return f.seen;
  }
  throw Error(str("command '", command_, "' has no flag --", name));
}

std::string FlagParser::see_help() const { return str(" (see 'bifurcate ", command_, " --help')"); }

void FlagParser::assign(Flag& flag, std::string_view spelled, std::string_view text) {
  const Parsed parsed = std::visit(
      [&](auto* target) {
        using T = std::remove_pointer_t<decltype(target)>;
        if constexpr (std::is_same_v<T, std::string>) {
          *target = std::string(text);
          return Parsed::kOk;
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          target->emplace_back(text);
          return Parsed::kOk;
        } else if constexpr (std::is_same_v<T, bool>) {
          return parse_bool(text, *target);
        } else if constexpr (std::is_same_v<T, double>) {
          return parse_double(text, *target);
        } else {
          return parse_integer(text, *target);
        }
      },
      flag.target);
  if (parsed == Parsed::kMalformed) {
    std::string_view kind = std::visit(
        [](auto* target) -> std::string_view {
          using T = std::remove_pointer_t<decltype(target)>;
          if constexpr (std::is_same_v<T, bool>) return "true or false";
          if constexpr (std::is_same_v<T, double>) return "a number";
          if constexpr (std::is_same_v<T, int64_t>) return "an integer";
          return "a non-negative integer";
        },
        flag.target);
    throw UsageError(str("flag ", spelled, ": '", text, "' is not ", kind, see_help()));
  }
  if (parsed == Parsed::kOutOfRange) {
    throw UsageError(str("flag ", spelled, ": '", text, "' is out of range",
                         std::holds_alternative<double*>(flag.target) ? "" : " (64-bit)", see_help()));
  }
  if (const auto* r = std::get_if<IntRange>(&flag.range)) {
    const int64_t v = *std::get<int64_t*>(flag.target);
    if (v < r->min || v > r->max) {
      throw UsageError(
          str("flag ", spelled, ": ", text, " is out of range ", describe_range(*r), see_help()));
    }
  } else if (const auto* r = std::get_if<RealRange>(&flag.range)) {
    if (!in_range(*std::get<double*>(flag.target), *r)) {
      throw UsageError(
          str("flag ", spelled, ": ", text, " is out of range ", describe_range(*r), see_help()));
    }
  }
}

ParseResult FlagParser::parse(int argc, const char* const* argv) {
  std::size_t next_positional = 0;
  bool flags_ended = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    bool looks_like_flag = !flags_ended && arg.size() > 1 && arg.front() == '-';
    if (!looks_like_flag) {
      if (next_positional == positionals_.size() && positional_list_ != nullptr) {
        positional_list_->push_back(std::string(arg));
        continue;
      }
      if (next_positional == positionals_.size()) {
        throw UsageError(str("unexpected argument '", arg, "' for '", command_, "'", see_help()));
      }
      *positionals_[next_positional++].target = std::string(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") return ParseResult::kShowHelp;
    if (arg == "--version") throw ShowVersion();

    // Split "--name=value"; a short alias takes its value from the next argument.
    std::string_view spelled = arg;
    std::optional<std::string_view> inline_value;
    if (std::size_t eq = arg.find('='); eq != std::string_view::npos) {
      spelled = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    Flag* flag = find_flag(spelled);
    if (flag == nullptr) {
      for (const auto& [old, instead] : moved_) {
        if (old == spelled)
          throw UsageError(str("flag ", spelled, " is not a flag of '", command_, "': ", instead));
      }
      throw UsageError(str("unknown flag '", spelled, "' for '", command_, "'", see_help()));
    }
    const bool repeatable = std::holds_alternative<std::vector<std::string>*>(flag->target);
    if (flag->seen && !repeatable) throw UsageError(str("flag ", spelled, " given more than once"));
    flag->seen = true;

    if (inline_value) {
      assign(*flag, spelled, *inline_value);
    } else if (std::holds_alternative<bool*>(flag->target)) {
      *std::get<bool*>(flag->target) = true;
    } else if (i + 1 < argc) {
      assign(*flag, spelled, argv[++i]);
    } else {
      throw UsageError(
          str("flag ", spelled, " needs a value (", value_placeholder(flag->target), ")", see_help()));
    }
  }
  for (const Flag& f : flags_) {
    if (f.need == Need::kRequired && !f.seen) {
      throw UsageError(str("missing required flag --", f.names.front(), " for '", command_, "'", see_help()));
    }
  }
  if (next_positional < positionals_.size()) {
    throw UsageError(
        str("missing argument ", positionals_[next_positional].name, " for '", command_, "'", see_help()));
  }
  if (positional_list_ != nullptr && positional_list_->empty()) {
    throw UsageError(str("missing argument ", positional_list_name_, " for '", command_, "'", see_help()));
  }
  return ParseResult::kRun;
}

std::string FlagParser::help() const {
  std::ostringstream out;
  out << "usage: bifurcate " << command_;
  for (const Positional& p : positionals_) out << ' ' << p.name;
  if (positional_list_ != nullptr) out << ' ' << positional_list_name_ << "...";
  for (const Flag& f : flags_) {
    if (f.need == Need::kRequired) out << " --" << f.names.front() << ' ' << value_placeholder(f.target);
  }
  out << " [flags]\n\n" << summary_ << "\n";
  if (!positionals_.empty() || positional_list_ != nullptr) {
    out << "\narguments:\n";
    for (const Positional& p : positionals_)
      out << "  " << std::left << std::setw(24) << p.name << p.help << '\n';
    if (positional_list_ != nullptr) {
      out << "  " << std::left << std::setw(24) << (positional_list_name_ + "...") << positional_list_help_
          << '\n';
    }
  }
  out << "\nflags:\n";
  auto row = [&](std::string_view alias, std::string_view name, std::string_view placeholder,
                 std::string_view help, std::string_view note) {
    std::string left = str(alias.empty() ? std::string("    ") : str("-", alias, ", "), "--", name,
                           placeholder.empty() ? "" : " ", placeholder);
    out << "  " << std::left << std::setw(24) << left << ' ' << help << note << '\n';
  };
  for (const Flag& f : flags_) {
    std::string note;
    if (f.names.size() > 1) {
      note += " (also";
      for (std::size_t i = 1; i < f.names.size(); ++i) note += str(i > 1 ? ", --" : " --", f.names[i]);
      note += ")";
    }
    if (const auto* r = std::get_if<IntRange>(&f.range)) note += str(" (", describe_range(*r), ")");
    if (const auto* r = std::get_if<RealRange>(&f.range)) note += str(" (", describe_range(*r), ")");
    if (std::holds_alternative<std::vector<std::string>*>(f.target)) note += " (repeatable)";
    if (f.need == Need::kRequired) {
      note += " (required)";
    } else if (!f.default_text.empty()) {
      note += str(" (default: ", f.default_text, ")");
    }
    row(f.alias, f.names.front(), value_placeholder(f.target), f.help, note);
  }
  row("h", "help", "", "show this help", "");
  row("", "version", "", "print the version and exit", "");
  return out.str();
}

}  // namespace bifurcate::cli
