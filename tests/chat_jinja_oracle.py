#!/usr/bin/python3
"""Test oracle for tests/chat_template_test.cpp: renders small templates with
jinja2 in the environment reference_render.py (../shared/testdata/chat-templates)
sets up for transformers' apply_chat_template: ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loopcontrols, raise_exception, strftime_now fixed at
2026-01-02, tojson = json.dumps(ensure_ascii=False).

stdin: a JSON list of {"template": str, "variables": {...}}.
stdout: a JSON list of {"text": str} or {"error": str, "syntax": bool, "line": int}."""
import json, sys
from datetime import datetime
import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

def strftime_now(fmt):
    return datetime(2026, 1, 2).strftime(fmt)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters['tojson'] = tojson
env.globals['raise_exception'] = raise_exception
env.globals['strftime_now'] = strftime_now
out = []
for case in json.load(sys.stdin):
    try:
        tmpl = env.from_string(case['template'])
    except jinja2.exceptions.TemplateSyntaxError as e:
        out.append({'error': str(e.message), 'syntax': True, 'line': e.lineno})
        continue
    except Exception as e:
        out.append({'error': str(e), 'syntax': True, 'line': 0})
        continue
    try:
        out.append({'text': tmpl.render(**case.get('variables', {}))})
    except Exception as e:
        out.append({'error': str(e), 'syntax': False, 'line': 0})
json.dump(out, sys.stdout, ensure_ascii=False)
