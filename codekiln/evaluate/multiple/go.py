"""Go (go build, then the binary): ``int``, ``float64``, ``bool``, ``string``, slices, maps;
``None`` is a nil pointer (``*int``), tuples of one element type are slices (Go has
multiple results but no tuple values) and tuples of mixed types are dropped.

The prompt imports the packages a body commonly needs (fmt, math, sort, strings, strconv)
and those the harness needs (io, os, reflect): Go wants every import before the first
declaration and rejects unused ones, so the harness uses each of them. The comparison walks
values with ``reflect``, floats within the tolerance.
"""

from __future__ import annotations

from codekiln.evaluate.multiple.base import C_ESCAPES, TOLERANCE, Language, escape
from codekiln.evaluate.multiple.infer import Type, Unexpressible
from codekiln.evaluate.multiple.translate import Spec
from codekiln.evaluate.sandbox import Limits
from codekiln.evaluate.tasks import Program

PREAMBLE = """package main

import (
\t"fmt"
\t"io"
\t"math"
\t"os"
\t"reflect"
\t"sort"
\t"strconv"
\t"strings"
)

"""

HARNESS = """
var _ = fmt.Sprint
var _ = math.Abs
var _ = sort.Ints
var _ = strconv.Itoa
var _ = strings.Split

func ckPtr[T any](v T) *T { return &v }

func ckEq(a, b reflect.Value) bool {
\tif a.Kind() != b.Kind() {
\t\treturn false
\t}
\tswitch a.Kind() {
\tcase reflect.Float64:
\t\treturn math.Abs(a.Float()-b.Float()) <= TOLERANCE*math.Max(1, math.Abs(b.Float()))
\tcase reflect.Pointer:
\t\tif a.IsNil() || b.IsNil() {
\t\t\treturn a.IsNil() && b.IsNil()
\t\t}
\t\treturn ckEq(a.Elem(), b.Elem())
\tcase reflect.Slice:
\t\tif a.Len() != b.Len() {
\t\t\treturn false
\t\t}
\t\tfor i := 0; i < a.Len(); i++ {
\t\t\tif !ckEq(a.Index(i), b.Index(i)) {
\t\t\t\treturn false
\t\t\t}
\t\t}
\t\treturn true
\tcase reflect.Map:
\t\tif a.Len() != b.Len() {
\t\t\treturn false
\t\t}
\t\tfor _, key := range b.MapKeys() {
\t\t\tvalue := a.MapIndex(key)
\t\t\tif !value.IsValid() || !ckEq(value, b.MapIndex(key)) {
\t\t\t\treturn false
\t\t\t}
\t\t}
\t\treturn true
\t}
\treturn a.Interface() == b.Interface()
}

func ckCheck[T any](n int, actual T, expected T) {
\tif !ckEq(reflect.ValueOf(&actual).Elem(), reflect.ValueOf(&expected).Elem()) {
\t\tfmt.Fprintf(os.Stderr, "case %d failed: got %v, expected %v\\n", n, actual, expected)
\t\tos.Exit(1)
\t}
}

func ckTokenBegin() ([]byte, *os.File) {
\tin, out := os.Getenv("CODEKILN_TOKEN_IN"), os.Getenv("CODEKILN_TOKEN_OUT")
\tos.Unsetenv("CODEKILN_TOKEN_IN")
\tos.Unsetenv("CODEKILN_TOKEN_OUT")
\tfdIn, errIn := strconv.Atoi(in)
\tfdOut, errOut := strconv.Atoi(out)
\tif errIn != nil || errOut != nil {
\t\treturn nil, nil
\t}
\tpipe := os.NewFile(uintptr(fdIn), "token-in")
\tnonce, err := io.ReadAll(pipe)
\tif err != nil {
\t\tos.Exit(3)
\t}
\tpipe.Close()
\treturn nonce, os.NewFile(uintptr(fdOut), "token-out")
}

func ckTokenEnd(nonce []byte, out *os.File) {
\tif out != nil {
\t\tout.Write(nonce)
\t\tout.Close()
\t}
}
""".replace("TOLERANCE", repr(TOLERANCE))


class Go(Language):
    key = "go"
    name = "Go"
    extension = "go"
    stop = ("\n}", "\nfunc ", "\n//", "\n```")
    binaries = ("go",)
    unions = False
    null = "nil"
    # Keywords, predeclared names and the imported packages (a parameter would hide one).
    reserved = frozenset(
        {"string", "len", "map", "type", "func", "range", "go", "chan", "select",
         "int", "float64", "bool", "byte", "rune", "error", "copy", "append", "new", "make",
         "fmt", "io", "math", "os", "reflect", "sort", "strconv", "strings"}
    )  # fmt: skip
    # The go command and its compiler reserve address space and run many threads; a fresh
    # build cache per program (HOME is the sandbox's folder) makes the first build slow.
    limits = Limits(timeout=30.0, cpu_seconds=30, memory_bytes=None, processes=512)

    def type_name(self, t: Type) -> str:
        simple = {"int": "int", "float": "float64", "bool": "bool", "str": "string"}
        if t.kind in simple:
            return simple[t.kind]
        if t.kind == "list":
            return "[]" + self.type_name(t.args[0])
        if t.kind == "tuple":
            if len(set(t.args)) != 1:
                raise Unexpressible(f"Go has no type for the mixed tuple {t}")
            return "[]" + self.type_name(t.args[0])
        if t.kind == "dict" and t.args[0].is_scalar:
            return f"map[{self.type_name(t.args[0])}]{self.type_name(t.args[1])}"
        if t.kind == "optional" and t.args[0].is_scalar:
            return "*" + self.type_name(t.args[0])
        raise Unexpressible(f"Go has no type for {t}")

    def check_type(self, t: Type) -> None:
        super().check_type(t)
        self.type_name(t)

    def float_literal(self, value: float) -> str:
        return repr(value)

    def str_literal(self, value: str) -> str:
        return '"' + escape(value, C_ESCAPES, lambda c: f"\\U{c:08x}") + '"'

    def some_literal(self, text: str, t: Type) -> str:
        return f"ckPtr[{self.type_name(t)}]({text})"

    def list_literal(self, items: list[str], t: Type) -> str:
        return f"{self.type_name(t)}{{{', '.join(items)}}}"

    def dict_literal(self, pairs: list[tuple[str, str]], t: Type) -> str:
        return f"{self.type_name(t)}{{{', '.join(f'{k}: {v}' for k, v in pairs)}}}"

    def prompt(self, spec: Spec) -> str:
        params = ", ".join(f"{self.ident(p.name)} {self.type_name(p.type)}" for p in spec.params)
        header = f"func {self.ident(spec.name)}({params}) {self.type_name(spec.returns)} {{\n"
        return PREAMBLE + self.doc_comment(spec) + header

    def harness(self, spec: Spec) -> str:
        returns = self.type_name(spec.returns)
        checks = "".join(
            f"\tckCheck[{returns}]({n}, {call}, {expected})\n"
            for n, (call, expected) in enumerate(self.cases(spec), 1)
        )
        main = f"\nfunc main() {{\n\tnonce, out := ckTokenBegin()\n{checks}"
        main += "\tckTokenEnd(nonce, out)\n}\n"
        return self.close + HARNESS + main

    def program(self, source: str) -> Program:
        return Program(
            files={"main.go": source},
            compile=["go", "build", "-o", "main", "main.go"],
            command=["./main"],
        )
