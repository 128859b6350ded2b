"""Detect a file's programming language from its name and, where needed, a little content.

Names follow GitHub Linguist ("C++", "Shell", "Jupyter Notebook", ...); ``LANGUAGES`` holds
every name this module can return. Plain text, binary and media files are not languages and
give ``None``. The rule, in order:

1. A well-known file name, matched exactly (``Dockerfile``, ``Makefile``, ``CMakeLists.txt``,
   ``BUILD.bazel``, ``.bashrc``, ``Pipfile``, ``Makefile.PL`` ...).
2. A name that starts with ``Dockerfile``/``Containerfile``/``Makefile``/``GNUmakefile``/
   ``Jenkinsfile`` (or ``dockerfile``/``makefile``) and a dot: what follows the dot names a
   variant, not a language (``Makefile.sas`` is the makefile for the SAS/C compiler,
   ``Dockerfile.dev``, ``makefile.linux``), unless it is the extension of a language build
   scripts are written in (``Makefile.toml``, ``dockerfile.go``, ``Dockerfile.py``).
3. The extension after the last dot, case-insensitively, except that ``.C`` and ``.H`` are C++.
4. One of those names followed by ``-`` or ``_`` (``Dockerfile-alpine``), when its extension
   decided nothing (``Dockerfile_test.go`` is Go).
5. No answer from the name: the shebang line (``#!/usr/bin/env python3``, ``#!/bin/bash -e``,
   ``#!/usr/bin/env -S deno run``), with version suffixes dropped (``python3.11`` is python).

Some extensions are shared by several languages. For them ``language_from_path`` returns
``AMBIGUOUS`` and ``detect_language`` reads the first ``HEAD_CHARS`` characters, trying these
checks in order and taking the first that matches:

- ``.h``: Objective-C if a line starts with ``@interface``, ``@protocol``, ``@implementation``,
  ``@end`` or ``#import``; else C++ if it has ``std::`` or a line starting with ``template <``,
  ``namespace x {``, ``class X {`` / ``class X :`` / ``class X;``, ``public:`` / ``private:`` /
  ``protected:``, ``virtual``, ``using namespace``, ``using a::b`` or ``#include <name>``
  without ``.h`` (``<vector>``); otherwise C.
- ``.m``: Objective-C if a line starts with ``@interface``, ``@implementation``, ``@protocol``,
  ``@end``, ``#import`` or ``#include``; otherwise MATLAB.
- ``.pl``: Perl if it has ``use strict``/``use warnings``, ``my $x``, ``sub name``, ``$_``,
  ``package A::B;`` or a perl shebang; else Prolog if a line starts with ``:-`` or a clause
  head ``name(...) :-``; otherwise Perl.
- ``.v``: Coq if a line starts with ``Theorem``/``Lemma``/``Inductive``/``Fixpoint`` and a
  name, or it has ``Require Import``/``Require Export``, ``Proof.`` or ``Qed.``; otherwise
  Verilog.
- ``.ts``: XML (a Qt Linguist translation) if it starts with ``<?xml``, has ``<!DOCTYPE TS>``
  or a line starting with ``<TS ``; otherwise TypeScript.
- ``.cls``: TeX if it has ``\\documentclass``, ``\\ProvidesClass``, ``\\NeedsTeXFormat`` or
  ``\\LoadClass``; else Visual Basic 6.0 if a line starts with ``VERSION 1.0 CLASS`` or
  ``Attribute VB_``; otherwise Apex.
- ``.fs``: GLSL if it has ``#version N``, ``gl_FragColor``/``gl_FragCoord``/``gl_FragData``,
  ``void main(``, or a line starting with ``uniform``/``varying``/``attribute`` declarations,
  ``precision mediump`` or ``layout(``; otherwise F#.
- ``.inc``: PHP if it has ``<?php`` or ``<?=``; else Assembly if a line starts with
  ``%macro``/``%define``/``%include``, ``.macro``/``.equ``/``.set``/``.globl``/``.section``
  or is ``NAME equ VALUE``; otherwise None (C, Pascal and POV-Ray use it too).
- ``.d``: Makefile (dependencies written by ``cc -MD``) if a line starts with
  ``name.o ... :``; else DTrace if a line starts with a probe ``provider:module:func:name``,
  is only ``BEGIN`` or ``END``, or is ``#pragma D``; otherwise D.
- ``.cl``: OpenCL if it has ``__kernel``, ``kernel void``, ``__global`` or
  ``get_global_id(``; otherwise Common Lisp.
- ``.pp``: Pascal if, in any case, a line starts with ``unit X;``/``program X;``/``library X;``
  or ``uses``, or is only ``begin``, ``interface`` or ``implementation``; otherwise Puppet.

Everything is decided by dict lookups on the name plus, for the few cases above, a handful of
precompiled regexes over a bounded prefix, because this runs on every file of a corpus.
"""

import re

AMBIGUOUS = "<ambiguous>"
"""What ``language_from_path`` returns when the extension needs the content to decide."""

HEAD_CHARS = 10_000
"""How many leading characters the content checks look at."""

# Extensions are listed per language, without the dot, lowercase; they are inverted into a
# dict below. Ambiguous extensions live only in _CONTENT_RULES.
_EXTENSIONS_BY_LANGUAGE = {
    "ABAP": "abap",
    "ActionScript": "as",
    "Ada": "adb ads ada",
    "Agda": "agda",
    "ANTLR": "g4",
    "Apex": "apex apxc apxt trigger",
    "AsciiDoc": "adoc asciidoc",
    "Assembly": "asm nasm s a51",
    "AutoHotkey": "ahk ahkl",
    "AutoIt": "au3",
    "Awk": "awk gawk mawk nawk",
    "Batchfile": "bat cmd",
    "BibTeX": "bib",
    "Bicep": "bicep",
    "C": "c",
    "C#": "cs csx",
    # Linguist also lists .hh under Hack and .ino under nothing else; C++ is the common case.
    "C++": "cpp cc cxx c++ cp hpp hh hxx h++ ipp tpp txx inl ino cppm ixx",
    "Cairo": "cairo",
    "Cap'n Proto": "capnp",
    "Chapel": "chpl",
    "Clojure": "clj cljs cljc cljx edn",
    "CMake": "cmake",
    "COBOL": "cob cbl cobol ccp cpy",
    "CoffeeScript": "coffee",
    "Common Lisp": "lisp lsp asd",
    "Crystal": "cr",
    "CSS": "css",
    "Cuda": "cu cuh",
    "Cython": "pyx pxd pxi",
    "D": "di",
    "Dart": "dart",
    "Dhall": "dhall",
    "Diff": "diff patch",
    "Dockerfile": "dockerfile containerfile",
    # Embedded JavaScript templates; Linguist's "EJS" (.ejs.t is left to Perl's .t).
    "EJS": "ejs ect jst",
    "Elixir": "ex exs",
    "Elm": "elm",
    "Emacs Lisp": "el",
    "Erlang": "erl hrl escript",
    "F#": "fsi fsx",
    "Fennel": "fnl",
    "Fish": "fish",
    "Forth": "fth 4th forth",
    # Linguist splits fixed form (.f, .for) from "Fortran Free Form" (.f90 ...); one name here.
    "Fortran": "f for f77 fpp f90 f95 f03 f08",
    "GDScript": "gd",
    "Gherkin": "feature",
    "Gleam": "gleam",
    "GLSL": "glsl vert frag geom comp tesc tese vsh fsh",
    "Go": "go",
    "Graphviz (DOT)": "dot gv",
    "GraphQL": "graphql gql graphqls",
    "Groovy": "groovy gradle gvy gy gsh",
    "Hack": "hack hhi",
    "Haml": "haml",
    "Handlebars": "hbs handlebars",
    "Haskell": "hs hs-boot hsc",
    "Haxe": "hx hxsl",
    "HCL": "hcl tf tfvars nomad",
    "HLSL": "hlsl hlsli fx fxh cginc",
    "HTML": "html htm xhtml",
    "Hy": "hy",
    "Idris": "idr lidr",
    "INI": "ini cfg cnf prefs",
    "Inno Setup": "iss",
    "Isabelle": "thy",
    "Janet": "janet",
    "Java": "java jsh",
    "JavaScript": "js mjs cjs jsx",
    "Jinja": "jinja jinja2 j2",
    "JSON": "json jsonl geojson topojson webmanifest avsc har",
    "Jsonnet": "jsonnet libsonnet",
    "Julia": "jl",
    "Jupyter Notebook": "ipynb",
    "Kotlin": "kt kts",
    "Lean": "lean",
    "Less": "less",
    "Lex": "l lex",
    "Liquid": "liquid",
    "LiveScript": "ls",
    "Lua": "lua rockspec",
    "M4": "m4",
    "Makefile": "mk mak make",
    "Markdown": "md markdown mkd mkdn mdown",
    "Mathematica": "nb wl wls wlt mt mathematica",
    "Mermaid": "mmd mermaid",
    "Mojo": "mojo",
    "Move": "move",
    "Mustache": "mustache",
    "Nextflow": "nf",
    "Nim": "nim nims nimble",
    "Nix": "nix",
    "NSIS": "nsi nsh",
    "Objective-C++": "mm",
    "OCaml": "ml mli mll mly",
    "Odin": "odin",
    "OpenCL": "opencl",
    "Org": "org",
    "Pascal": "pas dpr lpr",
    "Perl": "pm t psgi",
    "PHP": "php phtml php3 php4 php5 phps phpt ctp",
    "PlantUML": "puml plantuml iuml",
    "PostScript": "ps",
    "PowerShell": "ps1 psm1 psd1",
    "Prolog": "prolog yap",
    "Protocol Buffer": "proto",
    "Pug": "pug jade",
    "PureScript": "purs",
    "Python": "py pyw pyi gyp",
    "QML": "qml qbs",
    "R": "r rsx",
    "Racket": "rkt rktl",
    "Raku": "raku rakumod rakutest p6 pl6 pm6",
    "Reason": "re rei",
    "ReScript": "res resi",
    "reStructuredText": "rst rest",
    "Ruby": "rb rbw rake gemspec podspec ru jbuilder",
    "Rust": "rs",
    "SAS": "sas",
    "Sass": "sass",
    "Scala": "scala sc sbt",
    "Scheme": "scm ss sld sls sps",
    "SCSS": "scss",
    "Shell": "sh bash zsh ksh bats command",
    "Smali": "smali",
    "Smalltalk": "st",
    "Smarty": "tpl",
    "Solidity": "sol",
    "SQL": "sql ddl",
    "Stan": "stan",
    "Standard ML": "sml",
    "Starlark": "bzl star",
    "Stata": "do ado doh ihlp mata matah sthlp",
    "Svelte": "svelte",
    "Swift": "swift",
    "SystemVerilog": "sv svh",
    "Tcl": "tcl tm tk",
    "TeX": "tex sty ltx dtx ins",
    "Thrift": "thrift",
    "TOML": "toml",
    "TSX": "tsx",
    "Twig": "twig",
    "TypeScript": "mts cts",
    "Typst": "typ",
    "Vala": "vala vapi",
    "VBScript": "vbs",
    "Verilog": "vh",
    "VHDL": "vhd vhdl",
    "Vim Script": "vim vmb",
    "Visual Basic .NET": "vb",
    "Vue": "vue",
    "Vyper": "vy",
    "WDL": "wdl",
    "WebAssembly": "wat wast",
    "XML": "xml xsd xsl xslt plist csproj vbproj fsproj vcxproj props targets xaml resx iml",
    "YAML": "yml yaml",
    "Yacc": "y yacc yy",
    "Zig": "zig zon",
}

# Extensions whose case carries meaning; checked before the lowercase table.
_CASED_EXTENSIONS = {"C": "C++", "H": "C++"}

_FILENAMES_BY_LANGUAGE = {
    "CMake": "CMakeLists.txt",
    "CoffeeScript": "Cakefile",
    "Dockerfile": "Dockerfile Containerfile dockerfile",
    "Elixir": "mix.lock",
    "Emacs Lisp": ".emacs _emacs .spacemacs .gnus .viper",
    "Erlang": "rebar.config Emakefile",
    "Groovy": "Jenkinsfile",
    "INI": ".coveragerc .flake8 .pylintrc pylintrc",
    "JavaScript": "Jakefile",
    "JSON": "Pipfile.lock composer.lock flake.lock .jshintrc",
    "Just": "justfile Justfile .justfile",
    # Makefile.inc must be named here, or the ambiguous .inc would claim it.
    "Makefile": "Makefile makefile GNUmakefile BSDmakefile Kbuild",
    # ExtUtils::MakeMaker's script that writes the Makefile.
    "Perl": "Makefile.PL",
    "Meson": "meson.build meson_options.txt meson.options",
    "Python": "SConstruct SConscript wscript",
    "R": ".Rprofile",
    "Ruby": (
        "Rakefile Gemfile Vagrantfile Guardfile Podfile Brewfile Capfile Fastfile Appfile "
        "Berksfile Thorfile Dangerfile .irbrc .pryrc"
    ),
    "Shell": (
        ".bashrc .bash_profile .bash_login .bash_logout .bash_aliases .profile .zshrc .zshenv "
        ".zprofile .zlogin .zlogout .kshrc PKGBUILD APKBUILD"
    ),
    "Starlark": "BUILD BUILD.bazel WORKSPACE WORKSPACE.bazel MODULE.bazel Tiltfile",
    "TOML": "Pipfile Cargo.lock poetry.lock uv.lock Gopkg.lock",
    "Vim Script": ".vimrc _vimrc vimrc .gvimrc _gvimrc gvimrc .exrc .nvimrc",
    "YAML": ".clang-format .clang-tidy .gemrc",
}

# File names that keep their meaning with a suffix: Dockerfile.dev, Makefile-linux.
_NAME_STEMS = {
    "Dockerfile": "Dockerfile",
    "dockerfile": "Dockerfile",
    "Containerfile": "Dockerfile",
    "Makefile": "Makefile",
    "makefile": "Makefile",
    "GNUmakefile": "Makefile",
    "Jenkinsfile": "Groovy",
}
_NAME_PREFIXES = tuple(
    (stem + sep, language) for stem, language in _NAME_STEMS.items() for sep in ".-_"
)
# After a stem and a dot, these extensions still name the language: a build tool's own file
# (Makefile.toml for cargo-make) or a script about the build (dockerfile.go, Makefile.py).
_STEM_YIELDS_TO = frozenset(
    "py pl pm rb js mjs cjs ts go rs java kt kts lua sh bash toml json yml yaml xml md".split()
)

_M = re.MULTILINE
_OBJC_H = re.compile(r"^[ \t]*(?:@interface|@protocol|@implementation|@end|#import)\b", _M)
_CPP = re.compile(
    r"std::|^[ \t]*(?:template\s*<|namespace\s+[\w:]+\s*\{|namespace\s*\{"
    r"|class\s+\w+(?:\s+\w+)?\s*[:{;]|(?:public|private|protected)\s*:|virtual\s"
    r"|using\s+namespace\s|using\s+[\w:]*::|#\s*include\s*<\w+>)",
    _M,
)
_OBJC_M = re.compile(r"^[ \t]*(?:@interface|@implementation|@protocol|@end|#import|#include)\b", _M)
_PERL = re.compile(
    r"\buse\s+(?:strict|warnings)\b|\bmy\s*[$@%(]|^[ \t]*sub\s+\w+|\$_\b"
    r"|^[ \t]*package\s+[\w:]+\s*;|\A#!.*\bperl",
    _M,
)
_PROLOG = re.compile(r"^(?::-|[a-z]\w*(?:\([^\n]*\))?\s*:-)", _M)
_COQ = re.compile(
    r"^[ \t]*(?:Theorem|Lemma|Inductive|Fixpoint)\s+\w+|\bRequire\s+(?:Import|Export)\b"
    r"|\bProof\.|\bQed\.",
    _M,
)
_QT_TS = re.compile(r"\A\ufeff?\s*<\?xml|<!DOCTYPE TS>|^<TS\s", _M)
_TEX_CLASS = re.compile(r"\\(?:documentclass|ProvidesClass|NeedsTeXFormat|LoadClass)\b")
_VB_CLASS = re.compile(r"^[ \t]*(?:VERSION\s+1\.0\s+CLASS\b|Attribute\s+VB_)", _M)
_GLSL = re.compile(
    r"^[ \t]*#version\s+\d|\bgl_Frag(?:Color|Coord|Data)\b|\bvoid\s+main\s*\("
    r"|^[ \t]*(?:uniform|varying|attribute)\s+\w+\s+\w+"
    r"|^[ \t]*precision\s+(?:lowp|mediump|highp)\b|^[ \t]*layout\s*\(",
    _M,
)
_PHP = re.compile(r"<\?(?:php\b|=)")
_ASM = re.compile(
    r"^[ \t]*(?:%(?:macro|define|include)\b|\.(?:macro|equ|set|globl|section)\b"
    r"|\w+\s+(?:equ|EQU)\s)",
    _M,
)
_MAKE_DEPS = re.compile(r"^[\w./\\+-]+\.o\b[^:\n]*:", _M)
_DTRACE = re.compile(r"^(?:#pragma\s+D\s|(?:BEGIN|END)\s*$|\w+(?:\$\w+)?:[\w-]*:[\w-]*:[\w-]*)", _M)
_OPENCL = re.compile(r"\b__kernel\b|\bkernel\s+void\b|\b__global\b|\bget_global_id\s*\(")
_PASCAL = re.compile(
    r"^[ \t]*(?:(?:unit|program|library)\s+\w+\s*;|uses\b|(?:begin|interface|implementation)\s*$)",
    _M | re.IGNORECASE,
)

# Each ambiguous extension: (pattern, language) checks tried in order, then a default.
_CONTENT_RULES: dict[str, tuple[list[tuple[re.Pattern[str], str]], str | None]] = {
    "h": ([(_OBJC_H, "Objective-C"), (_CPP, "C++")], "C"),
    "m": ([(_OBJC_M, "Objective-C")], "MATLAB"),
    "pl": ([(_PERL, "Perl"), (_PROLOG, "Prolog")], "Perl"),
    "v": ([(_COQ, "Coq")], "Verilog"),
    "ts": ([(_QT_TS, "XML")], "TypeScript"),
    "cls": ([(_TEX_CLASS, "TeX"), (_VB_CLASS, "Visual Basic 6.0")], "Apex"),
    "fs": ([(_GLSL, "GLSL")], "F#"),
    "inc": ([(_PHP, "PHP"), (_ASM, "Assembly")], None),
    "d": ([(_MAKE_DEPS, "Makefile"), (_DTRACE, "DTrace")], "D"),
    "cl": ([(_OPENCL, "OpenCL")], "Common Lisp"),
    "pp": ([(_PASCAL, "Pascal")], "Puppet"),
}

# Interpreter names as they appear in a shebang, after any version suffix is dropped.
_INTERPRETERS_BY_LANGUAGE = {
    "Awk": "awk gawk mawk nawk",
    "Clojure": "clojure bb",
    "CoffeeScript": "coffee",
    "Common Lisp": "sbcl clisp ecl ccl",
    "Crystal": "crystal",
    "D": "rdmd",
    "Dart": "dart",
    "Elixir": "elixir",
    "Emacs Lisp": "emacs",
    "Erlang": "escript",
    "Fish": "fish",
    "Groovy": "groovy",
    "Haskell": "runhaskell runghc runhugs stack",
    "Hy": "hy",
    "JavaScript": "node nodejs bun gjs",
    "Julia": "julia",
    "Kotlin": "kotlin kscript",
    "Lua": "lua luajit",
    "Makefile": "make gmake",
    "MATLAB": "octave",
    "OCaml": "ocaml",
    "Perl": "perl",
    "PHP": "php",
    "PowerShell": "pwsh powershell",
    "Python": "python pypy",
    "R": "Rscript",
    "Racket": "racket",
    "Raku": "raku perl6 rakudo",
    "Ruby": "ruby jruby macruby",
    "Scala": "scala",
    "Scheme": "guile csi gosh chibi-scheme",
    "Shell": "sh bash zsh ksh mksh dash ash",
    "Swift": "swift",
    "Tcl": "tclsh wish expect",
    "TypeScript": "deno ts-node tsx",
}

_SHEBANG_MAX = 512  # Linux reads at most 256 bytes of a #! line; the cap keeps a huge line cheap.


def _invert(by_language: dict[str, str]) -> dict[str, str]:
    table: dict[str, str] = {}
    for language, keys in by_language.items():
        for key in keys.split():
            assert key not in table, f"{key!r} listed under {table[key]!r} and {language!r}"
            table[key] = language
    return table


_EXTENSIONS = _invert(_EXTENSIONS_BY_LANGUAGE)
assert not _EXTENSIONS.keys() & _CONTENT_RULES.keys(), "an ambiguous extension has a fixed one"
_EXTENSIONS |= dict.fromkeys(_CONTENT_RULES, AMBIGUOUS)
_FILENAMES = _invert(_FILENAMES_BY_LANGUAGE)
_INTERPRETERS = _invert(_INTERPRETERS_BY_LANGUAGE)

LANGUAGES: frozenset[str] = frozenset(
    [*_EXTENSIONS_BY_LANGUAGE, *_FILENAMES_BY_LANGUAGE, *_INTERPRETERS_BY_LANGUAGE]
    + list(_CASED_EXTENSIONS.values())
    + [language for _, language in _NAME_PREFIXES]
    + [language for checks, _ in _CONTENT_RULES.values() for _, language in checks]
    + [default for _, default in _CONTENT_RULES.values() if default is not None]
)
"""Every language name that ``language_from_path`` or ``detect_language`` can return."""


def language_from_path(path: str) -> str | None:
    """Language named by a path's file name or extension alone, ``AMBIGUOUS`` or None.

    >>> language_from_path("src/Main.kt"), language_from_path("docker/Dockerfile.dev")
    ('Kotlin', 'Dockerfile')
    >>> language_from_path("amiga/Makefile.sas"), language_from_path("Makefile.toml")
    ('Makefile', 'TOML')
    >>> language_from_path("lib/util.h") == AMBIGUOUS, language_from_path("notes.txt")
    (True, None)
    """
    name = path[path.rfind("/") + 1 :]
    language = _FILENAMES.get(name)
    if language is not None:
        return language
    dot = name.rfind(".")
    stem = _NAME_STEMS.get(name[: name.find(".")]) if dot > 0 else None
    if stem is not None and name[dot + 1 :].lower() not in _STEM_YIELDS_TO:
        return stem
    if dot >= 0:
        ext = name[dot + 1 :]
        language = _CASED_EXTENSIONS.get(ext) or _EXTENSIONS.get(ext.lower())
        if language is not None:
            return language
    for prefix, language in _NAME_PREFIXES:
        if name.startswith(prefix):
            return language
    return None


def detect_language(path: str, text: str) -> str | None:
    """Language of a file from its path, then its content where the path is not enough.

    >>> detect_language("include/shape.h", "namespace geo {\\nclass Shape {};\\n}\\n")
    'C++'
    >>> detect_language("bin/serve", "#!/usr/bin/env python3.11\\nimport http\\n")
    'Python'
    """
    language = language_from_path(path)
    if language == AMBIGUOUS:
        # AMBIGUOUS only comes from an extension, so the path's last dot starts it.
        checks, default = _CONTENT_RULES[path[path.rfind(".") + 1 :].lower()]
        head = text[:HEAD_CHARS]
        for pattern, candidate in checks:
            if pattern.search(head):
                return candidate
        return default
    if language is None:
        return _language_from_shebang(text)
    return language


def _language_from_shebang(text: str) -> str | None:
    """Language of the interpreter a ``#!`` first line names, e.g. ``#!/bin/bash -e`` -> Shell."""
    if not text.startswith("#!"):
        return None
    words = text[2:_SHEBANG_MAX].partition("\n")[0].split()
    if not words:
        return None
    program = words[0].rpartition("/")[2]
    if program == "env":
        # env's own flags (-S, -i) and NAME=value settings come before the program it runs.
        program = next((w for w in words[1:] if not w.startswith("-") and "=" not in w), "")
        program = program.rpartition("/")[2]
    language = _INTERPRETERS.get(program)
    if language is None:
        # python3.11, lua5.4, guile-3.0: the version says nothing about the language.
        language = _INTERPRETERS.get(program.rstrip("0123456789.-"))
    return language
