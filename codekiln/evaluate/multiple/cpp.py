"""C++17 (g++): ``long``, ``double``, ``std::string``, ``std::vector``, ``std::tuple``,
``std::map``, ``std::optional``. The prompt includes ``<bits/stdc++.h>``, as competitive
and MultiPL-E C++ does, so a body can use any of the standard library.

Literals name their type (``std::vector<long>({1, 2})``) so nested and empty ones need no
deduction; an expected value is first stored in a variable of the function's return type,
so the overloaded ``ck_eq`` compares two values of the same type.
"""

from __future__ import annotations

from codekiln.evaluate.multiple.base import C_ESCAPES, TOLERANCE, Language, escape
from codekiln.evaluate.multiple.infer import Type, Unexpressible
from codekiln.evaluate.multiple.translate import Spec
from codekiln.evaluate.sandbox import Limits
from codekiln.evaluate.tasks import Program

PREAMBLE = "#include <bits/stdc++.h>\n"

HARNESS = """
#include <unistd.h>

// Every overload is declared before any is defined: the templates call each other, and
// argument-dependent lookup would not find global functions for std:: types.
template <typename T> bool ck_eq(const T& a, const T& b);
bool ck_eq(const double& a, const double& b);
template <typename T> bool ck_eq(const std::vector<T>& a, const std::vector<T>& b);
template <typename T> bool ck_eq(const std::optional<T>& a, const std::optional<T>& b);
template <typename K, typename V> bool ck_eq(const std::map<K, V>& a, const std::map<K, V>& b);
template <typename... T> bool ck_eq(const std::tuple<T...>& a, const std::tuple<T...>& b);

template <typename T> bool ck_eq(const T& a, const T& b) { return a == b; }
bool ck_eq(const double& a, const double& b) {
    return std::fabs(a - b) <= TOLERANCE * std::max(1.0, std::fabs(b));
}
template <typename T> bool ck_eq(const std::vector<T>& a, const std::vector<T>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++) if (!ck_eq(a[i], b[i])) return false;
    return true;
}
template <typename T> bool ck_eq(const std::optional<T>& a, const std::optional<T>& b) {
    if (a.has_value() != b.has_value()) return false;
    return !a.has_value() || ck_eq(*a, *b);
}
template <typename K, typename V> bool ck_eq(const std::map<K, V>& a, const std::map<K, V>& b) {
    if (a.size() != b.size()) return false;
    for (const auto& [key, value] : b) {
        auto found = a.find(key);
        if (found == a.end() || !ck_eq(found->second, value)) return false;
    }
    return true;
}
template <typename Tuple, size_t... I>
bool ck_eq_tuple(const Tuple& a, const Tuple& b, std::index_sequence<I...>) {
    return (ck_eq(std::get<I>(a), std::get<I>(b)) && ...);
}
template <typename... T> bool ck_eq(const std::tuple<T...>& a, const std::tuple<T...>& b) {
    return ck_eq_tuple(a, b, std::index_sequence_for<T...>{});
}

static std::string ck_nonce;
static int ck_out = -1;

static void ck_token_begin() {
    const char* in = std::getenv("CODEKILN_TOKEN_IN");
    const char* out = std::getenv("CODEKILN_TOKEN_OUT");
    if (in == nullptr || out == nullptr) return;
    int fd = std::atoi(in);
    char buffer[256];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof buffer)) > 0) ck_nonce.append(buffer, n);
    close(fd);
    ck_out = std::atoi(out);
    unsetenv("CODEKILN_TOKEN_IN");
    unsetenv("CODEKILN_TOKEN_OUT");
}

static void ck_token_end() {
    if (ck_out < 0) return;
    if (write(ck_out, ck_nonce.data(), ck_nonce.size()) < 0) std::exit(3);
    close(ck_out);
}

static void ck_fail(int n) {
    std::cerr << "case " << n << " failed" << std::endl;
    std::exit(1);
}
""".replace("TOLERANCE", repr(TOLERANCE))


class Cpp(Language):
    key = "cpp"
    name = "C++"
    extension = "cpp"
    stop = ("\n}", "\n#", "\n//", "\nint main", "\n```")
    binaries = ("g++",)
    unions = False
    reserved = frozenset(
        {"operator", "new", "delete", "class", "template", "default", "register", "union"}
    )
    # cc1plus parsing <bits/stdc++.h> needs a few hundred MB and seconds; the run is small.
    limits = Limits(timeout=20.0, cpu_seconds=20, memory_bytes=4 << 30, processes=64)

    def type_name(self, t: Type) -> str:
        simple = {"int": "long", "float": "double", "bool": "bool", "str": "std::string"}
        if t.kind in simple:
            return simple[t.kind]
        args = [self.type_name(a) for a in t.args]
        if t.kind == "list":
            return f"std::vector<{args[0]}>"
        if t.kind == "tuple":
            return f"std::tuple<{', '.join(args)}>"
        if t.kind == "dict":
            return f"std::map<{args[0]}, {args[1]}>"
        if t.kind == "optional":
            return f"std::optional<{args[0]}>"
        raise Unexpressible(f"C++ has no type for {t}")

    def check_type(self, t: Type) -> None:
        super().check_type(t)
        self.type_name(t)

    def str_literal(self, value: str) -> str:
        return 'std::string("' + escape(value, C_ESCAPES, lambda c: f"\\U{c:08x}") + '")'

    def none_literal(self, t: Type) -> str:
        return f"std::optional<{self.type_name(t)}>()"

    def some_literal(self, text: str, t: Type) -> str:
        return f"std::optional<{self.type_name(t)}>({text})"

    def list_literal(self, items: list[str], t: Type) -> str:
        return f"{self.type_name(t)}({{{', '.join(items)}}})"

    def tuple_literal(self, items: list[str], t: Type) -> str:
        return f"{self.type_name(t)}({', '.join(items)})"

    def dict_literal(self, pairs: list[tuple[str, str]], t: Type) -> str:
        body = ", ".join(f"{{{k}, {v}}}" for k, v in pairs)
        return f"{self.type_name(t)}({{{body}}})"

    def prompt(self, spec: Spec) -> str:
        params = ", ".join(f"{self.type_name(p.type)} {self.ident(p.name)}" for p in spec.params)
        header = f"{self.type_name(spec.returns)} {self.ident(spec.name)}({params}) {{\n"
        return PREAMBLE + self.doc_comment(spec) + header

    def harness(self, spec: Spec) -> str:
        returns = self.type_name(spec.returns)
        checks = "".join(
            f"    {{\n        {returns} expected = {expected};\n"
            f"        if (!ck_eq({call}, expected)) ck_fail({n});\n    }}\n"
            for n, (call, expected) in enumerate(self.cases(spec), 1)
        )
        main = f"\nint main() {{\n    ck_token_begin();\n{checks}    ck_token_end();\n"
        main += "    return 0;\n}\n"
        return self.close + HARNESS + main

    def program(self, source: str) -> Program:
        return Program(
            files={"main.cpp": source},
            compile=["g++", "-std=c++17", "-o", "main", "main.cpp"],
            command=["./main"],
        )
