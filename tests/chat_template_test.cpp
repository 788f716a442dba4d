// Per-construct tests of the chat-template engine against jinja2 itself:
// small templates of our own (whitespace control, literals, operators,
// filters, tests, methods, loops, scoping, macros, errors) are rendered by
// tests/chat_jinja_oracle.py (the environment transformers uses) and by the
// engine; text and runtime error messages must be equal, and a template
// jinja2 refuses to parse must be refused too, on the same line.
#include <map>

#include "chat_test_support.h"

namespace bifurcate::chat::testing {
namespace {

struct Case {
  std::string name;
  std::string source;
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();
};

nlohmann::ordered_json messages_example() {
  return nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "  Be brief. "},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello", "tool_calls": [{"function": {"name": "f", "arguments": {"b": 1, "a": [2.5, null]}}}]},
    {"role": "user", "content": "Bye"}])");
}

std::vector<Case> cases() {
  return {
      // ---- whitespace control ----
      {"lstrip_and_trim_blocks", "  {% if true %}\n    x\n  {% endif %}\nafter\n"},
      {"minus_both_sides", "a  {%- if true -%}  b  {%- endif -%}  c"},
      {"plus_disables_lstrip_and_trim", "  {%+ if true +%}\nx\n  {%+ endif %}\ny"},
      {"comment_lines", "line1\n  {# comment #}\nline2\n{#- c -#}  x  {#+ c #}\nz"},
      {"variable_tags_keep_newlines", "{{- ' a ' -}}\n\n{{ 'b' }}   \n  {{ 'c' }}\n  {{- 'd' }}"},
      {"loop_indentation", "\t  {% for i in [1,2] %}\n\t{{ i }}\n  {% endfor %}\nend\n"},
      {"no_lstrip_mid_line", "x {% if true %}\n{% endif %}y\n  z {% if true %}w{% endif %}"},
      {"raw_blocks", "{% raw %}{{ not }}{% endraw %}  {%- raw -%}  a {{ b }}  {%- endraw %} c"},
      {"trailing_newline_dropped_once", "a\n\n"},
      {"crlf_normalised", "a\r\nb\rc{% if true %}\r\nd{% endif %}\r\n"},
      {"set_between_lines", "a\n{%- set x = 1 %}\nb\n  {% set y = 2 %}\nc{{ x + y }}"},
      {"unicode_space_stripped", "a\xe3\x80\x80{%- if true %}b{% endif %}\xe2\x80\x83\n"},
      {"block_at_template_start", "   {% if true %}x{% endif %}"},
      {"trim_after_comment_and_lstrip_before_endfor", "{% for i in 'ab' %}\n  {# c #}\n  {{ i }}\n  {% endfor %}"},
      // ---- literals and printing ----
      {"python_str_of_values",
       "{{ [1, 'a', none, true, 1.5, {'k': 'v'}, (1,), (1, 2), ()] }} {{ {'a': 1, 1: 'x', none: false} }}"},
      {"python_repr_quotes", R"({{ ["it's", 'say "hi"', 'both \' "', '\n\t\x01é\u00a0\u2028'] }})"},
      {"floats", "{{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ -0.0 }} {{ 3.0 }} "
                 "{{ 1.5e3 }} {{ 10 / 4 }} {{ 2 ** -1 }} {{ 123456789.123456789 }}"},
      {"integer_literals", "{{ 1_000 }} {{ 0x1F }} {{ 0b101 }} {{ 0o17 }} {{ 000 }}"},
      {"string_escapes", R"({{ 'tab\there' }} {{ "q\"q" }} {{ 'u\u00e9 x\x41 o\101 unknown\d' }} {{ 'adj' "acent" }})"},
      {"multiline_string", "{{ 'multi\nline' }}"},
      // ---- operators ----
      {"arithmetic", "{{ 1 + 2 * 3 - 4 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} "
                     "{{ 1.5 + 1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ true + 1 }} {{ -(3) }} {{ +4 }}"},
      {"concat_and_repeat", "{{ 'a' ~ 1 ~ none ~ true ~ [1, 'b'] ~ x }} {{ 'ab' * 3 }} {{ [1] * 2 }} {{ [1] + [2] }}"},
      {"comparisons", "{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} "
                      "{{ 'a' in 'cat' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ none is none }} "
                      "{{ 1 is not string }} {{ x == x }} {{ x == none }} {{ [1, [2]] == [1, [2]] }} {{ (1,) == [1] }}"},
      {"boolean_values", "{{ 0 or 'x' }} {{ '' and 'y' }} {{ none or [] }} {{ 1 and 2 }} {{ not [] }} {{ not 'a' }}"},
      {"conditional_expression", "{{ 'y' if true else 'n' }} {{ 'y' if false }}|{{ 1 if 0 else 2 if 0 else 3 }}"},
      {"filter_binds_tighter", "{{ -3|abs }} {{ 'a' + 'b'|upper }} {{ not 'x' is string }} {{ 1 + 2|string }}"},
      // ---- undefined ----
      {"undefined_values", "{{ x is defined }} {{ x is undefined }} [{{ x }}] {{ x|default('d') }} "
                           "{{ ''|default('e', true) }} {{ none|default('f') }} {{ x|length }} {{ x|list }} "
                           "{% for i in x %}never{% endfor %} {{ 'a' in x }} {{ x is iterable }} {{ x|trim }}|"
                           "{{ {'a': 1}.b is defined }} {{ x|string }} {{ x ~ 'z' }} {{ not x }}"},
      // ---- tests ----
      {"tests", "{{ 1 is number }} {{ true is number }} {{ 1 is integer }} {{ true is integer }} {{ 1.0 is float }} "
                "{{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 'a' is iterable }} "
                "{{ 1 is iterable }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 'a' is eq 'a' }} "
                "{{ 'a' is equalto 'b' }} {{ 1 is sameas 1 }} {{ none is sameas none }} {{ 'abc' is lower }} "
                "{{ 'ABC' is upper }} {{ 1 is boolean }} {{ false is false }} {{ 2 is gt 1 }} {{ 2 is ge 2 }} "
                "{{ 1 is lt 2 }} {{ 'a' is in 'abc' }} {{ range is callable }} {{ 'a' is callable }} "
                "{{ [1] is sequence }} {{ none is none }} {{ 1 is ne 2 }} {{ 'upper' is filter }} {{ 'odd' is test }}"},
      // ---- filters ----
      {"string_filters", "{{ '  x  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'hello wORLD-foo(bar'|title }}|"
                         "{{ 'hELLO'|capitalize }}|{{ 'abc'|upper }}|{{ 'ÀÉ'|lower }}|{{ 'straße'|upper }}|"
                         "{{ 'a-b'|replace('-', '+') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 1|string ~ 'x' }}|"
                         "{{ '<a & \"b\">'|e }}|{{ 'x'|center(6) }}|{{ 'a b  c'|wordcount }}|{{ 'abc'|reverse }}|"
                         "{{ '%s=%d'|format('a', 3) }}|{{ 'héllo'|length }}|{{ 'x'|safe }}"},
      {"sequence_filters", "{{ [3, 1, 2]|sort }}|{{ ['b', 'A', 'c']|sort }}|{{ [3, 1, 2]|sort(reverse=true) }}|"
                           "{{ [{'n': 2}, {'n': 1}]|sort(attribute='n') }}|{{ [1, 2, 3]|first }}|{{ [1, 2, 3]|last }}|"
                           "{{ 'abc'|list }}|{{ {'a': 1}|items|list }}|{{ [1, 2]|join(', ') }}|{{ {'a': 1}|length }}|"
                           "{{ [1, 1, 2, 'A', 'a']|unique|list }}|{{ [1, 2, 3]|reverse|list }}|{{ [1, 2, 3]|sum }}|"
                           "{{ [1, 5, 3]|max }}|{{ ['b', 'A']|min }}|{{ [1, 2, 3, 4, 5]|batch(2)|list }}|"
                           "{{ [1, 2, 3]|batch(2, 0)|list }}|{{ []|first }}|{{ {'b': 1, 'a': 2}|dictsort }}|"
                           "{{ [{'a': 'x'}, {'a': 'y'}]|join(',', attribute='a') }}|{{ [[1], [2]]|sum(start=[]) }}"},
      {"number_filters", "{{ '42'|int + 1 }} {{ '4.7'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ ' 12 '|int }} "
                         "{{ '0x1A'|int(0, 16) }} {{ '2.5'|float }} {{ 'y'|float }} {{ 2.567|round(2) }} "
                         "{{ 2.5|round }} {{ 3.5|round }} {{ 2.1|round(0, 'ceil') }} {{ 1|float }}"},
      {"select_and_map",
       "{{ [{'r': 'u', 'c': 1}, {'r': 'a', 'c': 2}, {'r': 'u', 'c': 3}]|selectattr('r', 'equalto', 'u')|"
       "map(attribute='c')|list }} {{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3, 4]|reject('even')|list }} "
       "{{ [{'a': 1}, {'b': 2}]|rejectattr('a')|list }} {{ [{'a': 1}, {'a': 0}]|selectattr('a')|list }} "
       "{{ ['a', 'b']|map('upper')|join }} {{ [{'x': {'y': 5}}]|map(attribute='x.y')|list }} "
       "{{ [[1, 2], [3, 4]]|map(attribute='1')|list }} {{ [{'a': 1}, {}]|map(attribute='a', default='z')|list }} "
       "{{ [1, 'a', none]|select('string')|list }} {{ [3, 1]|map('string')|join('-') }} "
       "{{ messages|selectattr('role', 'equalto', 'user')|list|length }} {{ [0, 1, '']|select|list }}",
       {{"messages", messages_example()}}},
      {"indent", "{{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, first=true) }}|{{ 'a\n\nb'|indent('> ', blank=true) }}|"
                 "{{ ''|indent }}|{{ 'x\n'|indent(3, true) }}"},
      {"tojson", "{{ {'a': [1, 2.5, none, true, 'é\"\\n\\u0001'], 'b': {}, 'c': []}|tojson }} "
                 "{{ [1, {'x': [], 'y': [2]}]|tojson(indent=2) }} {{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }} "
                 "{{ 'é🚀'|tojson(true) }} {{ 1e100|tojson }} {{ (1, 2)|tojson }} {{ {1: 2, none: 3}|tojson }} "
                 "{{ messages|tojson }} {{ messages[2].tool_calls[0].function.arguments|tojson(indent=4) }}",
       {{"messages", messages_example()}}},
      // ---- methods ----
      {"string_methods",
       "{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a.b.c'.rsplit('.', 1) }} "
       "{{ 'xAx'.strip('x') }} [{{ '  a '.lstrip() }}|{{ ' a  '.rstrip() }}] {{ 'abc'.startswith('a') }} "
       "{{ 'abc'.endswith(('x', 'c')) }} {{ 'abc'.replace('b', 'B') }} {{ 'Hi'.upper() }} {{ 'Hi'.lower() }} "
       "{{ 'hello world'.title() }} {{ \"they're\".title() }} {{ 'abcé'.find('é') }} {{ 'abcb'.count('b') }} "
       "{{ '-'.join(['a', 'b']) }} {{ 'a\nb\r\nc'.splitlines() }} {{ '12'.isdigit() }} {{ 'ab'.isalpha() }} "
       "{{ '5'.zfill(3) }} {{ 'pre_x'.removeprefix('pre_') }} {{ 'a=b=c'.partition('=') }} "
       "{{ '{} and {}'.format(1, 'x') }} {{ 'x'.rjust(3, '.') }} {{ ' '.isspace() }} {{ 'ab'.capitalize() }}"},
      {"dict_and_list_methods",
       "{% set d = {'a': 1, 'b': 2} %}{{ d.items()|list }} {{ d.keys()|list }} {{ d.values()|list }} "
       "{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 0) }} {{ d['a'] }} {{ d.a }} [{{ d.z }}] "
       "{{ d['items'] is callable }} {{ [1, 2, 2].count(2) }} {{ [1, 2].index(2) }} {{ d.items is defined }}"},
      {"indexing_and_slicing",
       "{{ 'abc'[1] }} {{ 'abc'[-1] }} {{ 'héllo'[1:3] }} {{ [1, 2, 3, 4, 5][::2] }} {{ [1, 2, 3][::-1] }} "
       "[{{ 'abc'[5:] }}] {{ [1, 2, 3][-2:] }} {{ 'abcdef'[-1:1:-2] }} {{ messages[0].role }} {{ messages[-1]['content'] }} "
       "{{ messages[1:]|length }} [{{ [1][5] }}] {{ messages.0.role }} {{ (1, 2, 3)[1:] }}",
       {{"messages", messages_example()}}},
      // ---- statements ----
      {"loop_variables", "{% for x in [1, 2, 3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                         "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
                         "{{ loop.previtem }}{{ loop.nextitem }}{{ loop.previtem is defined }};{% endfor %}"},
      {"loop_forms", "{% for x in [] %}a{% else %}empty{% endfor %} {% for k, v in {'a': 1, 'b': 2}.items() %}"
                     "{{ k }}={{ v }} {% endfor %}{% for x in range(10) if x is odd %}{{ x }}{{ loop.index }}"
                     "{{ loop.last }} {% endfor %}{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}"
                     "{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %} {% for c in 'hé' %}[{{ c }}]{% endfor %} "
                     "{% for k in {'z': 1, 'a': 2} %}{{ k }}{% endfor %} {% for x in [1] if false %}a{% else %}b{% endfor %}"
                     "{{ range(2, 10, 3)|list }} {{ range(5, 0, -2)|list }}"},
      {"nested_loops", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}"
                       "{{ loop.index }}|{% endfor %}"},
      {"scoping", "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = i * 10 %}{{ x }}{% endfor %}{{ x }}"
                  "{% if true %}{% set x = 5 %}{% endif %}{{ x }}{% for i in [1] %}{% set y = 3 %}{% endfor %}[{{ y }}]"},
      {"namespace", "{% set ns = namespace(n=0, items=[]) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
                    "{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.n }} {{ ns.items }} {{ ns.missing is defined }}"
                    "{% set ns2 = namespace({'a': 1}, b=2) %} {{ ns2.a }}{{ ns2.b }}"},
      {"set_blocks", "{% set s %}  Hello {{ 'w' }}  {% endset %}[{{ s }}]{% set t | upper | trim %} ab {% endset %}[{{ t }}]"
                     "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set tup = 1, 2 %}{{ tup }}"},
      {"macros", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} "
                 "{{ greet('B', '?') }} {{ greet(name='C') }} {{ greet('D', punct='.') }} "
                 "{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) }} "
                 "{% macro va() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ va(1, 2, k=3) }} "
                 "{% macro late() %}{{ later }}{% endmacro %}{% set later = 'seen' %}{{ late() }} "
                 "{% macro m2(a) %}[{{ a }}]{% endmacro %}{{ m2() }} {{ greet }}"},
      {"call_and_filter_blocks", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
                                 "{% call wrap('b') %}bold {{ 1 + 1 }}{% endcall %} "
                                 "{% filter upper %}abc {{ 'd' }}{% endfilter %} "
                                 "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]"},
      {"strftime_now", "{{ strftime_now('%Y-%m-%d %d %b %Y %A %B %H:%M %j') }}"},
      {"chat_like", "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m['content']|trim }}\n{% endfor %}"
                    "{% if add_generation_prompt %}<|assistant|>{% endif %}{{ eos_token }}",
       {{"messages", messages_example()}, {"add_generation_prompt", true}, {"bos_token", "<s>"}, {"eos_token", "</s>"}}},
      {"unicode", "{{ '🚀é'|length }} {{ '🚀é'[0] }} {{ 'ǅ'|lower }} {{ 'ﬁ'|upper }} {{ 'İ'|lower|length }}"},
      // ---- runtime errors (messages as jinja2 words them) ----
      {"error_raise_exception", "a{{ raise_exception('bad input: ' ~ 42) }}"},
      {"error_none_plus_int", "{{ none + 1 }}"},
      {"error_str_plus_int", "{{ 'a' + 1 }}"},
      {"error_list_plus_none", "{{ [1] + none }}"},
      {"error_iterate_none", "{% for x in none %}{% endfor %}"},
      {"error_undefined_attribute", "{{ x.y }}"},
      {"error_missing_key_attribute", "{{ {'a': 1}.b.c }}"},
      {"error_ordering", "{{ 1 < 'a' }}"},
      {"error_division_by_zero", "{{ 1 / 0 }}"},
      {"error_in_int", "{{ 'a' in 1 }}"},
      {"error_int_in_str", "{{ 1 in 'abc' }}"},
      {"error_unpack", "{% for a, b in [[1, 2, 3]] %}{% endfor %}"},
      {"error_call_undefined", "{{ undefined_fn() }}"},
      {"error_call_string", "{{ 'abc'() }}"},
      {"error_str_index", "{{ 'abc'.index('z') }}"},
      {"error_items_of_list", "{{ 1|items|list }}"},
      {"error_namespace_assign", "{% set x = 1 %}{% set x.y = 2 %}"},
      {"error_undefined_plus", "{{ 'a' + x }}"},
      {"error_unsafe_method", "{{ [1].append(2) }}"},
  };
}

struct OracleResult {
  bool ok = false;
  std::string text;
  std::string error;
  bool syntax = false;
  int line = 0;
};

std::vector<OracleResult> run_oracle(const nlohmann::ordered_json& batch) {
  const std::string input = ::testing::TempDir() + "chat_oracle_input.json";
  write_file(input, batch.dump());
  CommandResult r = run_command("/usr/bin/python3 '" + tests_dir() + "/chat_jinja_oracle.py' < '" + input + "'");
  EXPECT_EQ(r.status, 0) << r.out;
  std::vector<OracleResult> out;
  for (const auto& item : nlohmann::json::parse(r.out)) {
    OracleResult o;
    o.ok = item.contains("text");
    if (o.ok) {
      o.text = item["text"];
    } else {
      o.error = item["error"];
      o.syntax = item["syntax"];
      o.line = item["line"];
    }
    out.push_back(o);
  }
  return out;
}

// The variables every render sees, as the engine provides them.
nlohmann::ordered_json full_variables(const nlohmann::ordered_json& given) {
  nlohmann::ordered_json v = {{"messages", nlohmann::ordered_json::array()},
                              {"add_generation_prompt", false},
                              {"bos_token", ""},
                              {"eos_token", ""},
                              {"tools", nullptr}};
  for (auto it = given.begin(); it != given.end(); ++it) v[it.key()] = it.value();
  return v;
}

std::string render_ours(const std::string& source, const nlohmann::ordered_json& vars) {
  ChatTemplate tmpl(source);
  RenderOptions o = reference_options();
  o.extra_variables = nlohmann::ordered_json::object();
  o.add_generation_prompt = vars["add_generation_prompt"];
  o.bos_token = vars["bos_token"];
  o.eos_token = vars["eos_token"];
  o.tools_ordered = vars["tools"];
  return tmpl.render(vars["messages"], o);
}

class AgainstJinja2 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!jinja2_available())
      GTEST_SKIP() << "/usr/bin/python3 cannot import jinja2: install Debian's python3-jinja2 "
                      "(scripts/install-deps.sh) to compare with jinja2";
  }
};

TEST_F(AgainstJinja2, EveryConstructRendersAsJinja2Does) {
  const std::vector<Case> all = cases();
  nlohmann::ordered_json batch = nlohmann::ordered_json::array();
  for (const Case& c : all) batch.push_back({{"template", c.source}, {"variables", full_variables(c.variables)}});
  const std::vector<OracleResult> expected = run_oracle(batch);
  ASSERT_EQ(expected.size(), all.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(all[i].name + ": " + all[i].source);
    const OracleResult& want = expected[i];
    if (want.syntax) {
      ADD_FAILURE() << "jinja2 cannot parse this case: " << want.error;
      continue;
    }
    try {
      std::string text = render_ours(all[i].source, full_variables(all[i].variables));
      EXPECT_TRUE(want.ok) << "jinja2 raised '" << want.error << "', we rendered: " << text;
      EXPECT_EQ(text, want.text);
    } catch (const TemplateError& e) {
      EXPECT_FALSE(want.ok) << "we raised '" << e.what() << "', jinja2 rendered: " << want.text;
      EXPECT_EQ(e.message(), want.error);
    }
  }
}

struct SyntaxCase {
  std::string source;
  int line;    // where we report it (jinja2 must agree on the line)
  int column;  // where we report it (jinja2 gives no column)
};

TEST_F(AgainstJinja2, SyntaxErrorsNameTheLineAndColumn) {
  const std::vector<SyntaxCase> all = {
      {"{% if x %}\nabc", 2, 4},             // the end of the template, expecting endif
      {"{{ x }}\n  {{ 1 + }}", 2, 10},       // '}}' where an operand belongs
      {"a\n\n{% foo %}", 3, 4},              // unknown tag
      {"{% endfor %}", 1, 4},                // closes nothing
      {"x\n{{ 'abc }}", 2, 4},               // unterminated string
      {"ab\n {# never closed", 2, 2},        // unterminated comment
      {"{{ (1, 2] }}", 1, 9},                // mismatched bracket
      {"{% set x = %}", 1, 12},              // missing expression
      {"{% macro m(a=1, b) %}{% endmacro %}", 1, 17},
      {"{% for x in y %}\n{% endif %}", 2, 4},
      {"{{ a.'b' }}", 1, 6},
      {"{% if a is %}{% endif %}", 1, 12},
      {"{{ 1 2 }}", 1, 6},
      {"{% for in x %}{% endfor %}", 1, 8},
  };
  nlohmann::ordered_json batch = nlohmann::ordered_json::array();
  for (const SyntaxCase& c : all) batch.push_back({{"template", c.source}, {"variables", full_variables({})}});
  const std::vector<OracleResult> expected = run_oracle(batch);
  ASSERT_EQ(expected.size(), all.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(all[i].source);
    EXPECT_TRUE(expected[i].syntax) << "jinja2 parsed it";
    EXPECT_EQ(expected[i].line, all[i].line) << "jinja2's line";
    try {
      ChatTemplate tmpl(all[i].source);
      ADD_FAILURE() << "parsed without error";
    } catch (const TemplateError& e) {
      EXPECT_EQ(e.line(), all[i].line) << e.what();
      EXPECT_EQ(e.column(), all[i].column) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("line " + std::to_string(all[i].line) + ", column ", 0), 0u) << e.what();
    }
  }
}

// ---- without jinja2: positions, limits and the API ----

TEST(ChatTemplate, RuntimeErrorsNameTheExpression) {
  ChatTemplate tmpl("{{ 'a' }}\n  {{ none + 1 }}");
  try {
    tmpl.render(nlohmann::json::array(), RenderOptions{});
    FAIL() << "rendered";
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.line(), 2);
    EXPECT_EQ(e.column(), 11);  // the '+'
    EXPECT_EQ(e.message(), "unsupported operand type(s) for +: 'NoneType' and 'int'");
  }
  ChatTemplate raising("ok\n{% if true %}{{ raise_exception('no system role') }}{% endif %}");
  try {
    raising.render(nlohmann::json::array(), RenderOptions{});
    FAIL() << "rendered";
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.line(), 2);
    EXPECT_EQ(e.column(), 17);  // raise_exception
    EXPECT_EQ(e.message(), "no system role");
    EXPECT_STREQ(e.what(), "line 2, column 17: no system role");
  }
}

std::string render_with_limits(const std::string& source, RenderLimits limits) {
  RenderOptions o;
  o.limits = limits;
  return ChatTemplate(source).render(nlohmann::json::array(), o);
}

TEST(ChatTemplate, LimitsStopRunawayTemplates) {
  RenderLimits limits;
  limits.max_steps = 100000;
  limits.max_output_bytes = 1 << 20;
  auto expect_limit = [&](const std::string& source, const std::string& which) {
    try {
      render_with_limits(source, limits);
      ADD_FAILURE() << "rendered: " << source;
    } catch (const TemplateError& e) {
      EXPECT_NE(e.message().find(which), std::string::npos) << source << " -> " << e.what();
    }
  };
  expect_limit("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "RenderLimits::max_depth");
  expect_limit("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "RenderLimits::max_steps");
  expect_limit("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
               "RenderLimits::max_output_bytes");
  expect_limit("{% for i in range(30000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}",
               "RenderLimits::max_output_bytes");
  expect_limit("{{ 'ab' * 10000000 }}", "RenderLimits::max_output_bytes");
  expect_limit("{% set ns = namespace(l=[1]) %}{% for i in range(300) %}{% set ns.l = [ns.l] %}{% endfor %}",
               "nested deeper");
  // A namespace holding itself renders (Python prints the cycle) without recursing forever.
  try {
    render_with_limits("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", limits);
  } catch (const TemplateError& e) {
    EXPECT_NE(e.message().find("recursion"), std::string::npos) << e.what();
  }
  // Deeply nested source is refused while parsing, not with a stack overflow.
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  EXPECT_THROW(ChatTemplate{deep}, TemplateError);
  std::string deep_blocks;
  for (int i = 0; i < 2000; ++i) deep_blocks += "{% if true %}";
  EXPECT_THROW(ChatTemplate{deep_blocks}, TemplateError);
}

TEST(ChatTemplate, RejectsInvalidUtf8AndUnsupportedTags) {
  try {
    ChatTemplate bad("ok\nab\xff");
    FAIL();
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.line(), 2);
    EXPECT_EQ(e.column(), 3);
  }
  EXPECT_THROW(ChatTemplate("{% extends 'base.html' %}"), TemplateError);
  EXPECT_THROW(ChatTemplate("{% include 'x' %}"), TemplateError);
  EXPECT_THROW(ChatTemplate("{% break %}"), TemplateError);
}

TEST(ChatTemplate, KeyOrderFollowsTheOrderedOverload) {
  const char* json = R"([{"role": "user", "content": "x", "z": 1, "a": 2}])";
  ChatTemplate tmpl("{{ messages[0]|tojson }}");
  EXPECT_EQ(tmpl.render(nlohmann::ordered_json::parse(json), RenderOptions{}),
            R"({"role": "user", "content": "x", "z": 1, "a": 2})");
  EXPECT_EQ(tmpl.render(nlohmann::json::parse(json), RenderOptions{}),
            R"({"a": 2, "content": "x", "role": "user", "z": 1})");
  RenderOptions with_tools;
  with_tools.tools_ordered = nlohmann::ordered_json::parse(R"([{"b": 1, "a": 2}])");
  with_tools.tools = nlohmann::json::parse(R"([{"ignored": true}])");
  EXPECT_EQ(ChatTemplate("{{ tools|tojson }}").render(nlohmann::json::array(), with_tools), R"([{"b": 1, "a": 2}])");
}

TEST(ChatTemplate, ExtraVariablesAndClock) {
  RenderOptions o;
  o.extra_variables = {{"date_string", "26 Jul 2024"}, {"custom", {1, 2}}};
  o.now = std::chrono::sys_seconds(std::chrono::sys_days(std::chrono::year(2031) / 12 / 25).time_since_epoch());
  EXPECT_EQ(ChatTemplate("{{ date_string }} {{ custom }} {{ strftime_now('%d %B %Y') }}").render(nlohmann::json::array(), o),
            "26 Jul 2024 [1, 2] 25 December 2031");
  RenderOptions bad;
  bad.extra_variables = nlohmann::ordered_json::array();
  EXPECT_THROW(ChatTemplate("x").render(nlohmann::json::array(), bad), TemplateError);
}

TEST(ChatTemplate, ChatmlFallback) {
  ChatTemplate tmpl{std::string(chatml_template())};
  nlohmann::json messages = nlohmann::json::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])");
  RenderOptions o;
  EXPECT_EQ(tmpl.render(messages, o), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
  o.add_generation_prompt = false;
  EXPECT_EQ(tmpl.render(messages, o), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
}

}  // namespace
}  // namespace bifurcate::chat::testing
