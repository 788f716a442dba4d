#include "cli/args.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <iomanip>
#include <optional>
#include <sstream>
#include <type_traits>

namespace bifurcate::cli {
namespace {

std::string_view value_placeholder(const auto& target) {
  struct {
    std::string_view operator()(std::string*) const { return "TEXT"; }
    std::string_view operator()(int64_t*) const { return "INT"; }
    std::string_view operator()(uint64_t*) const { return "N"; }
    std::string_view operator()(double*) const { return "NUMBER"; }
    std::string_view operator()(bool*) const { return ""; }
  } visitor;
  return std::visit(visitor, target);
}

template <class Int>
bool parse_integer(std::string_view text, Int& out) {
  if (text.empty() || (std::is_unsigned_v<Int> && text.front() == '-')) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool parse_double(std::string_view text, double& out) {
  // strtod (not from_chars) for "1e-5"/"inf" portability; it needs a terminated copy.
  std::string copy(text);
  if (copy.empty() || std::isspace(static_cast<unsigned char>(copy.front()))) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtod(copy.c_str(), &end);
  return errno == 0 && end == copy.c_str() + copy.size();
}

bool parse_bool(std::string_view text, bool& out) {
  if (text == "true" || text == "1" || text == "yes") return out = true, true;
  if (text == "false" || text == "0" || text == "no") return out = false, true;
  return false;
}

}  // namespace

FlagParser::FlagParser(std::string_view command, std::string_view summary)
    : command_(command), summary_(summary) {}

void FlagParser::add_flag(std::string_view name, char alias, std::string_view help, Need need, Target target,
                          std::string default_text) {
  // Declarations are code, not input: a clash is a programming error, still reported plainly.
  for (const Flag& f : flags_) {
    require(f.name != name && (alias == '\0' || f.alias != alias), "command '", command_,
            "' declares flag --", name, " twice (or its alias -", alias, ")");
  }
  require(name != "help" && alias != 'h', "command '", command_, "': --help/-h is reserved");
  flags_.push_back({std::string(name), alias, std::string(help), need, target, std::move(default_text)});
}

void FlagParser::operator()(std::string& value, std::string_view name, char alias, std::string_view help,
                            Need need) {
  add_flag(name, alias, help, need, &value, value.empty() ? "" : str('"', value, '"'));
}
void FlagParser::operator()(int64_t& value, std::string_view name, char alias, std::string_view help, Need need) {
  add_flag(name, alias, help, need, &value, str(value));
}
void FlagParser::operator()(uint64_t& value, std::string_view name, char alias, std::string_view help,
                            Need need) {
  add_flag(name, alias, help, need, &value, str(value));
}
void FlagParser::operator()(double& value, std::string_view name, char alias, std::string_view help, Need need) {
  add_flag(name, alias, help, need, &value, str(value));
}
void FlagParser::operator()(bool& value, std::string_view name, char alias, std::string_view help) {
  add_flag(name, alias, help, Need::kOptional, &value, value ? "true" : "false");
}

void FlagParser::positional(std::string& value, std::string_view name, std::string_view help) {
  positionals_.push_back({std::string(name), std::string(help), &value});
}

void FlagParser::positional_list(std::vector<std::string>& values, std::string_view name, std::string_view help) {
  require(positional_list_ == nullptr, "command '", command_, "' declares two positional lists");
  positional_list_ = &values;
  positional_list_name_ = name;
  positional_list_help_ = help;
}

FlagParser::Flag* FlagParser::find_flag(std::string_view spelled) {
  for (Flag& f : flags_) {
    if (spelled.starts_with("--") ? spelled.substr(2) == f.name
                                  : (f.alias != '\0' && spelled.size() == 2 && spelled[1] == f.alias)) {
      return &f;
    }
  }
  return nullptr;
}

std::string FlagParser::see_help() const { return str(" (see 'bifurcate ", command_, " --help')"); }

void FlagParser::assign(Flag& flag, std::string_view spelled, std::string_view text) {
  bool ok = std::visit(
      [&](auto* target) {
        using T = std::remove_pointer_t<decltype(target)>;
        if constexpr (std::is_same_v<T, std::string>) {
          *target = std::string(text);
          return true;
        } else if constexpr (std::is_same_v<T, bool>) {
          return parse_bool(text, *target);
        } else if constexpr (std::is_same_v<T, double>) {
          return parse_double(text, *target);
        } else {
          return parse_integer(text, *target);
        }
      },
      flag.target);
  if (!ok) {
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

    // Split "--name=value"; a short alias takes its value from the next argument.
    std::string_view spelled = arg;
    std::optional<std::string_view> inline_value;
    if (std::size_t eq = arg.find('='); eq != std::string_view::npos) {
      spelled = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    Flag* flag = find_flag(spelled);
    if (flag == nullptr) throw UsageError(str("unknown flag '", spelled, "' for '", command_, "'", see_help()));
    if (flag->seen) throw UsageError(str("flag ", spelled, " given more than once"));
    flag->seen = true;

    if (inline_value) {
      assign(*flag, spelled, *inline_value);
    } else if (std::holds_alternative<bool*>(flag->target)) {
      *std::get<bool*>(flag->target) = true;
    } else if (i + 1 < argc) {
      assign(*flag, spelled, argv[++i]);
    } else {
      throw UsageError(str("flag ", spelled, " needs a value (", value_placeholder(flag->target), ")",
                           see_help()));
    }
  }
  for (const Flag& f : flags_) {
    if (f.need == Need::kRequired && !f.seen) {
      throw UsageError(str("missing required flag --", f.name, " for '", command_, "'", see_help()));
    }
  }
  if (next_positional < positionals_.size()) {
    throw UsageError(str("missing argument ", positionals_[next_positional].name, " for '", command_, "'",
                         see_help()));
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
    if (f.need == Need::kRequired) out << " --" << f.name << ' ' << value_placeholder(f.target);
  }
  out << " [flags]\n\n" << summary_ << "\n";
  if (!positionals_.empty() || positional_list_ != nullptr) {
    out << "\narguments:\n";
    for (const Positional& p : positionals_) out << "  " << std::left << std::setw(24) << p.name << p.help << '\n';
    if (positional_list_ != nullptr) {
      out << "  " << std::left << std::setw(24) << (positional_list_name_ + "...") << positional_list_help_ << '\n';
    }
  }
  out << "\nflags:\n";
  auto row = [&](char alias, std::string_view name, std::string_view placeholder, std::string_view help,
                 std::string_view note) {
    std::string left = str(alias != '\0' ? str("-", alias, ", ") : std::string("    "), "--", name,
                           placeholder.empty() ? "" : " ", placeholder);
    out << "  " << std::left << std::setw(24) << left << ' ' << help << note << '\n';
  };
  for (const Flag& f : flags_) {
    std::string note = f.need == Need::kRequired ? " (required)"
                       : f.default_text.empty()  ? ""
                                                 : str(" (default: ", f.default_text, ")");
    row(f.alias, f.name, value_placeholder(f.target), f.help, note);
  }
  row('h', "help", "", "show this help", "");
  return out.str();
}

}  // namespace bifurcate::cli
