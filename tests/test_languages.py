import doctest

import pytest

from codekiln.curate import languages
from codekiln.curate.languages import (
    AMBIGUOUS,
    HEAD_CHARS,
    LANGUAGES,
    detect_language,
    language_from_path,
)

# (path, language) decided by the name alone.
PATH_CASES = [
    ("src/main.py", "Python"),
    ("stubs/os.pyi", "Python"),
    ("gui/app.pyw", "Python"),
    ("src/fast.pyx", "Cython"),
    ("src/fast.pxd", "Cython"),
    ("lib/core.c", "C"),
    ("lib/core.cpp", "C++"),
    ("lib/core.cc", "C++"),
    ("lib/core.cxx", "C++"),
    ("include/core.hpp", "C++"),
    ("include/core.hh", "C++"),
    ("legacy/Widget.C", "C++"),
    ("legacy/Widget.H", "C++"),
    ("sketch/blink.ino", "C++"),
    ("App/Program.cs", "C#"),
    ("src/Main.java", "Java"),
    ("web/index.js", "JavaScript"),
    ("web/index.mjs", "JavaScript"),
    ("web/config.cjs", "JavaScript"),
    ("web/Button.jsx", "JavaScript"),
    ("web/Button.tsx", "TSX"),
    ("web/esm.mts", "TypeScript"),
    ("cmd/server/main.go", "Go"),
    ("src/lib.rs", "Rust"),
    ("app/models/user.rb", "Ruby"),
    ("tasks/deploy.rake", "Ruby"),
    ("mylib.gemspec", "Ruby"),
    ("public/index.php", "PHP"),
    ("lib/Foo/Bar.pm", "Perl"),
    ("t/basic.t", "Perl"),
    ("lib/Grammar.rakumod", "Raku"),
    ("scripts/init.lua", "Lua"),
    ("scripts/build.sh", "Shell"),
    ("scripts/build.bash", "Shell"),
    ("scripts/prompt.zsh", "Shell"),
    ("conf.d/aliases.fish", "Fish"),
    ("tools/Install.ps1", "PowerShell"),
    ("tools/build.bat", "Batchfile"),
    ("tools/build.CMD", "Batchfile"),
    ("analysis/model.R", "R"),
    ("analysis/model.r", "R"),
    ("src/solver.jl", "Julia"),
    ("ios/AppDelegate.mm", "Objective-C++"),
    ("ios/View.swift", "Swift"),
    ("android/Main.kt", "Kotlin"),
    ("build.gradle.kts", "Kotlin"),
    ("src/Main.scala", "Scala"),
    ("build.sbt", "Scala"),
    ("build.gradle", "Groovy"),
    ("src/Script.groovy", "Groovy"),
    ("src/Main.hs", "Haskell"),
    ("src/parser.ml", "OCaml"),
    ("src/parser.mli", "OCaml"),
    ("src/Library.fsi", "F#"),
    ("scripts/build.fsx", "F#"),
    ("src/server.erl", "Erlang"),
    ("lib/app.ex", "Elixir"),
    ("test/app_test.exs", "Elixir"),
    ("src/core.clj", "Clojure"),
    ("src/core.cljs", "Clojure"),
    ("src/utils.lisp", "Common Lisp"),
    ("src/lib.scm", "Scheme"),
    ("src/main.rkt", "Racket"),
    ("lisp/init.el", "Emacs Lisp"),
    ("lib/main.dart", "Dart"),
    ("src/solver.f90", "Fortran"),
    ("legacy/solver.F", "Fortran"),
    ("legacy/PAYROLL.cbl", "COBOL"),
    ("src/main.adb", "Ada"),
    ("src/unit1.pas", "Pascal"),
    ("boot/start.asm", "Assembly"),
    ("arch/entry.S", "Assembly"),
    ("rtl/alu.sv", "SystemVerilog"),
    ("rtl/alu.vhd", "VHDL"),
    ("src/main.zig", "Zig"),
    ("src/main.nim", "Nim"),
    ("src/main.cr", "Crystal"),
    ("source/app.d", AMBIGUOUS),
    ("src/Main.elm", "Elm"),
    ("src/Main.purs", "PureScript"),
    ("src/Main.idr", "Idris"),
    ("src/Main.agda", "Agda"),
    ("src/Main.lean", "Lean"),
    ("scripts/tool.tcl", "Tcl"),
    ("scripts/report.awk", "Awk"),
    ("rules.mk", "Makefile"),
    ("cmake/FindFoo.cmake", "CMake"),
    ("docker/app.dockerfile", "Dockerfile"),
    ("site/index.html", "HTML"),
    ("views/index.ejs", "EJS"),
    ("site/style.css", "CSS"),
    ("site/style.scss", "SCSS"),
    ("site/style.less", "Less"),
    ("README.md", "Markdown"),
    ("docs/index.rst", "reStructuredText"),
    ("paper/main.tex", "TeX"),
    ("db/schema.sql", "SQL"),
    ("package.json", "JSON"),
    ("config.yml", "YAML"),
    ("config.YAML", "YAML"),
    ("pyproject.toml", "TOML"),
    ("pom.xml", "XML"),
    ("setup.cfg", "INI"),
    ("api/service.proto", "Protocol Buffer"),
    ("api/service.thrift", "Thrift"),
    ("api/schema.graphql", "GraphQL"),
    ("src/App.vue", "Vue"),
    ("src/App.svelte", "Svelte"),
    ("notebooks/eda.ipynb", "Jupyter Notebook"),
    ("kernels/add.cu", "Cuda"),
    ("shaders/blur.frag", "GLSL"),
    ("shaders/blur.hlsl", "HLSL"),
    ("contracts/Token.sol", "Solidity"),
    ("image/Object.st", "Smalltalk"),
    ("src/Module1.vb", "Visual Basic .NET"),
    ("triggers/Account.trigger", "Apex"),
    ("models/eight_schools.stan", "Stan"),
    ("analysis/clean.do", "Stata"),
    ("analysis/report.sas", "SAS"),
    ("flake.nix", "Nix"),
    ("infra/main.tf", "HCL"),
    ("tools/defs.bzl", "Starlark"),
    ("docs/guide.adoc", "AsciiDoc"),
    ("notes/todo.org", "Org"),
    ("src/Main.hx", "Haxe"),
    ("plugin/foo.vim", "Vim Script"),
    ("src/main.hack", "Hack"),
    ("notebooks/calc.nb", "Mathematica"),
    ("infra/main.bicep", "Bicep"),
    ("fix.patch", "Diff"),
    ("changes.diff", "Diff"),
    # Well-known file names, matched exactly.
    ("Dockerfile", "Dockerfile"),
    ("services/api/Dockerfile", "Dockerfile"),
    ("Containerfile", "Dockerfile"),
    ("Dockerfile.dev", "Dockerfile"),
    ("Dockerfile-alpine", "Dockerfile"),
    ("Makefile", "Makefile"),
    ("makefile", "Makefile"),
    ("GNUmakefile", "Makefile"),
    ("Makefile.am", "Makefile"),
    ("Makefile.inc", "Makefile"),
    # After a build-file stem and a dot comes a variant, not a language (issue 16).
    ("amiga/Makefile.sas", "Makefile"),
    ("Makefile.in", "Makefile"),
    ("Makefile.d", "Makefile"),
    ("makefile.linux", "Makefile"),
    ("GNUmakefile.rules", "Makefile"),
    ("docker/Dockerfile.tpl", "Dockerfile"),
    # ... unless the extension is one that build scripts are written in.
    ("Makefile.PL", "Perl"),
    ("Makefile.toml", "TOML"),
    ("tools/dockerfile.go", "Go"),
    ("Dockerfile_test.go", "Go"),
    ("CMakeLists.txt", "CMake"),
    ("src/CMakeLists.txt", "CMake"),
    ("Rakefile", "Ruby"),
    ("Gemfile", "Ruby"),
    ("Vagrantfile", "Ruby"),
    ("BUILD", "Starlark"),
    ("pkg/BUILD.bazel", "Starlark"),
    ("WORKSPACE", "Starlark"),
    ("meson.build", "Meson"),
    ("Jenkinsfile", "Groovy"),
    ("home/.bashrc", "Shell"),
    (".zshrc", "Shell"),
    (".vimrc", "Vim Script"),
    (".emacs", "Emacs Lisp"),
    ("Pipfile", "TOML"),
    ("Cargo.lock", "TOML"),
    ("justfile", "Just"),
    # Case matters for these names and extensions.
    ("build", None),
    ("MAKEFILE", None),
    ("lib/foo.h", AMBIGUOUS),
    ("lib/foo.H", "C++"),
    ("lib/foo.c", "C"),
    # Not languages.
    ("notes.txt", None),
    ("requirements.txt", None),
    ("logo.png", None),
    ("photo.JPG", None),
    ("archive.tar.gz", None),
    ("model.bin", None),
    ("LICENSE", None),
    (".gitignore", None),
    ("data.unknownext", None),
    ("trailing.", None),
]


def test_languages_cover_many_names_with_linguist_spelling():
    assert len(LANGUAGES) >= 80
    for name in ["C++", "C#", "F#", "Jupyter Notebook", "Protocol Buffer", "Vim Script", "Shell"]:
        assert name in LANGUAGES
    assert AMBIGUOUS not in LANGUAGES
    assert not {"Zsh", "Bash", "Text", "Gradle"} & LANGUAGES


@pytest.mark.parametrize(("path", "expected"), PATH_CASES)
def test_language_from_path(path, expected):
    assert language_from_path(path) == expected


def test_every_path_case_detects_to_a_known_language():
    for path, _ in PATH_CASES:
        language = detect_language(path, "")
        assert language is None or language in LANGUAGES, (path, language)


OBJC_HEADER = """\
#import <Foundation/Foundation.h>

@interface Counter : NSObject
@property (nonatomic) NSInteger count;
- (void)increment;
@end
"""
CPP_HEADER = """\
#pragma once
#include <vector>

namespace geo {
class Polygon {
 public:
  explicit Polygon(std::vector<double> xs);
};
}  // namespace geo
"""
CPP_TEMPLATE_HEADER = """\
#ifndef MAX_H
#define MAX_H
template <typename T>
T max_of(T a, T b) { return a > b ? a : b; }
#endif
"""
OBJC_BRIDGE_HEADER = """\
#import <Foundation/Foundation.h>

#ifdef __cplusplus
#include <string>
std::string ToStdString(NSString *s);
#endif

@interface Bridge : NSObject
@end
"""
CPP_STD_HEADERS_ONLY = """\
#pragma once
#include <cstddef>
#include <cstdint>

struct Span { const uint8_t *data; size_t size; };
"""
C_HEADER = """\
#ifndef LIST_H
#define LIST_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct list { struct list *next; void *value; };
size_t list_length(const struct list *head);

#ifdef __cplusplus
}
#endif
#endif
"""
OBJC_SOURCE = """\
#import "Counter.h"

@implementation Counter
- (void)increment { self.count += 1; }
@end
"""
MATLAB_SOURCE = """\
function y = smooth(x, k)
% SMOOTH moving average of x over k samples
y = conv(x, ones(1, k) / k, 'same');
end
"""
PERL_SOURCE = """\
use strict;
use warnings;

my $total = 0;
while (<STDIN>) { chomp; $total += $_; }
print "$total\\n";
"""
PERL_WRITING_PROLOG = """\
use strict;
my $rules = <<'PL';
ancestor(X, Y) :- parent(X, Y).
ancestor(X, Z) :- parent(X, Y), ancestor(Y, Z).
PL
print $rules;
"""
PROLOG_SOURCE = """\
:- module(family, [grandparent/2]).

parent(tom, bob).
parent(bob, ann).
grandparent(X, Z) :- parent(X, Y), parent(Y, Z).
"""
COQ_SOURCE = """\
Require Import Arith.

Theorem add_0_r : forall n : nat, n + 0 = n.
Proof.
  intros n. induction n; simpl; auto.
Qed.
"""
VERILOG_SOURCE = """\
module counter(input clk, input rst, output reg [3:0] q);
  always @(posedge clk) begin
    if (rst) q <= 0; else q <= q + 1;
  end
endmodule
"""
QT_TS_SOURCE = """\
<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="de_DE">
<context><name>MainWindow</name></context>
</TS>
"""
TYPESCRIPT_SOURCE = """\
export interface User { id: number; name: string }

export function greet<TS extends User>(user: TS): string {
  return `hello ${user.name}`;
}
"""
TEX_CLASS = """\
\\NeedsTeXFormat{LaTeX2e}
\\ProvidesClass{thesis}[2024/01/01 Thesis class]
\\LoadClass[12pt]{report}
"""
VB_CLASS = """\
VERSION 1.0 CLASS
BEGIN
  MultiUse = -1  'True
END
Attribute VB_Name = "Account"
Public Balance As Currency
"""
APEX_CLASS = """\
public with sharing class AccountService {
    public static List<Account> active() {
        return [SELECT Id, Name FROM Account WHERE Active__c = true];
    }
}
"""
GLSL_SOURCE = """\
#version 330 core
in vec2 uv;
out vec4 color;
uniform sampler2D tex;
void main() { color = texture(tex, uv); }
"""
FSHARP_SOURCE = """\
module Geometry

let area width height = width * height

[<EntryPoint>]
let main argv =
    printfn "%d" (area 3 4)
    0
"""
PHP_INCLUDE = """\
<?php
$config = ['db' => 'sqlite:app.db'];
"""
ASM_INCLUDE = """\
%define STDOUT 1
%macro print 2
    mov rax, 1
    mov rdi, STDOUT
%endmacro
"""
PASCAL_INCLUDE = """\
{$IFDEF FPC}
  {$MODE DELPHI}
{$ENDIF}
"""
D_SOURCE = """\
module app;
import std.stdio;

void main() { writeln("hello"); }
"""
MAKE_DEPS = """\
build/main.o: src/main.c include/util.h \\
  include/config.h
"""
DTRACE_SOURCE = """\
python$target:::function-entry
/copyinstr(arg1) == "start"/
{
    self->trace = 1;
}
"""
OPENCL_SOURCE = """\
__kernel void add(__global const float *a, __global float *b) {
    int i = get_global_id(0);
    b[i] += a[i];
}
"""
LISP_SOURCE = """\
(defpackage :geometry (:use :cl))
(in-package :geometry)
(defun area (w h) (* w h))
"""
PASCAL_UNIT = """\
unit Geometry;

interface

function Area(W, H: Integer): Integer;

implementation
"""
PUPPET_SOURCE = """\
class nginx {
  package { 'nginx': ensure => installed }
  service { 'nginx': ensure => running, require => Package['nginx'] }
}
"""

CONTENT_CASES = [
    ("include/Counter.h", OBJC_HEADER, "Objective-C"),
    ("include/polygon.h", CPP_HEADER, "C++"),
    ("include/max.h", CPP_TEMPLATE_HEADER, "C++"),
    ("include/Bridge.h", OBJC_BRIDGE_HEADER, "Objective-C"),
    ("include/span.h", CPP_STD_HEADERS_ONLY, "C++"),
    ("include/list.h", C_HEADER, "C"),
    ("include/empty.h", "", "C"),
    ("src/Counter.m", OBJC_SOURCE, "Objective-C"),
    ("src/smooth.m", MATLAB_SOURCE, "MATLAB"),
    ("bin/sum.pl", PERL_SOURCE, "Perl"),
    ("src/family.pl", PROLOG_SOURCE, "Prolog"),
    ("bin/gen_rules.pl", PERL_WRITING_PROLOG, "Perl"),
    ("bin/hello.pl", 'print "hello\\n";\n', "Perl"),
    ("theories/Add.v", COQ_SOURCE, "Coq"),
    ("rtl/counter.v", VERILOG_SOURCE, "Verilog"),
    ("i18n/app_de.ts", QT_TS_SOURCE, "XML"),
    ("src/user.ts", TYPESCRIPT_SOURCE, "TypeScript"),
    ("tex/thesis.cls", TEX_CLASS, "TeX"),
    ("vb/Account.cls", VB_CLASS, "Visual Basic 6.0"),
    ("force-app/AccountService.cls", APEX_CLASS, "Apex"),
    ("shaders/blit.fs", GLSL_SOURCE, "GLSL"),
    ("src/Geometry.fs", FSHARP_SOURCE, "F#"),
    ("inc/config.inc", PHP_INCLUDE, "PHP"),
    ("inc/macros.inc", ASM_INCLUDE, "Assembly"),
    ("inc/defines.inc", PASCAL_INCLUDE, None),
    ("source/app.d", D_SOURCE, "D"),
    ("build/main.d", MAKE_DEPS, "Makefile"),
    ("probes/trace.d", DTRACE_SOURCE, "DTrace"),
    ("kernels/add.cl", OPENCL_SOURCE, "OpenCL"),
    ("src/geometry.cl", LISP_SOURCE, "Common Lisp"),
    ("src/geometry.pp", PASCAL_UNIT, "Pascal"),
    ("manifests/nginx.pp", PUPPET_SOURCE, "Puppet"),
]


@pytest.mark.parametrize(("path", "text", "expected"), CONTENT_CASES)
def test_ambiguous_extension_rules(path, text, expected):
    assert language_from_path(path) == AMBIGUOUS
    assert detect_language(path, text) == expected
    assert expected is None or expected in LANGUAGES


def test_every_ambiguous_extension_has_both_outcomes_tested():
    outcomes: dict[str, set] = {}
    for path, _, expected in CONTENT_CASES:
        outcomes.setdefault(path.rsplit(".", 1)[1], set()).add(expected)
    for ext in languages._CONTENT_RULES:
        assert len(outcomes.get(ext, ())) >= 2, ext


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("using namespace std;", "C++"),
        ("using util::Buffer;", "C++"),
        ("class Widget;", "C++"),
        ("class API_EXPORT Widget : public Base {", "C++"),
        ("namespace detail {", "C++"),
        ("  virtual ~Widget();", "C++"),
        (" public:", "C++"),
        ("#include <memory>", "C++"),
        ('extern "C" {', "C"),
        ("struct point { int x, y; };", "C"),
        ("#include <stdio.h>", "C"),
        ("int class_count;", "C"),
        ("/* a class of allocators, see the namespace docs */", "C"),
    ],
)
def test_header_cpp_markers(line, expected):
    assert detect_language("include/x.h", f"#pragma once\n{line}\n") == expected


def test_content_rules_read_only_the_head():
    late_marker = "\n" * HEAD_CHARS + "@interface Late : NSObject\n@end\n"
    assert detect_language("late.h", late_marker) == "C"
    assert detect_language("early.h", late_marker.lstrip("\n")) == "Objective-C"


def test_ambiguous_extension_ignores_case_and_unknown_content():
    assert detect_language("SRC/FOO.M", OBJC_SOURCE) == "Objective-C"
    assert detect_language("x.TS", TYPESCRIPT_SOURCE) == "TypeScript"


@pytest.mark.parametrize(
    ("shebang", "expected"),
    [
        ("#!/usr/bin/env python3", "Python"),
        ("#!/usr/bin/python3.11", "Python"),
        ("#!/usr/bin/env python3.11 -u", "Python"),
        ("#!/usr/local/bin/pypy3", "Python"),
        ("#!/bin/bash", "Shell"),
        ("#!/bin/bash -euo pipefail", "Shell"),
        ("#! /bin/sh", "Shell"),
        ("#!/usr/bin/env zsh", "Shell"),
        ("#!/usr/bin/perl -w", "Perl"),
        ("#!/usr/bin/env perl6", "Raku"),
        ("#!/usr/bin/env -S node --experimental-modules", "JavaScript"),
        ("#!/usr/bin/env -S deno run --allow-net", "TypeScript"),
        ("#!/usr/bin/env -i PATH=/usr/bin ruby", "Ruby"),
        ("#!/usr/bin/env Rscript", "R"),
        ("#!/usr/bin/env lua5.4", "Lua"),
        ("#!/usr/bin/tclsh8.6", "Tcl"),
        ("#!/usr/bin/make -f", "Makefile"),
        ("#!/usr/bin/awk -f", "Awk"),
        ("#!/usr/bin/env pwsh", "PowerShell"),
        ("#!/usr/bin/env escript", "Erlang"),
        ("#!/usr/bin/env guile-3.0", "Scheme"),
        ("#!/usr/bin/env python3\r", "Python"),
        ("#!/usr/bin/env", None),
        ("#!", None),
        ("#!/opt/bin/frobnicate", None),
        ("# just a comment, not a shebang", None),
    ],
)
def test_shebang(shebang, expected):
    text = shebang + "\nbody\n"
    assert detect_language("bin/tool", text) == expected
    assert detect_language("scripts/tool.unknownext", text) == expected


def test_shebang_only_counts_on_the_first_line():
    assert detect_language("bin/tool", "\n#!/bin/bash\n") is None


def test_name_beats_shebang():
    assert detect_language("tool.py", "#!/bin/bash\necho hi\n") == "Python"


@pytest.mark.parametrize("path", ["notes.txt", "logo.png", "photo.jpeg", "data.xyz123", "README"])
def test_not_code_is_none(path):
    assert detect_language(path, "just some words\n") is None


def test_docstring_examples():
    assert doctest.testmod(languages).failed == 0
