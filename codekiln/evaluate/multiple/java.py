"""Java 17 (javac, then java): a static method of ``class Problem``.

Types: ``long``, ``double``, ``boolean``, ``String`` (boxed inside generics), ``ArrayList``,
``HashMap``, ``Optional`` and, for pairs, a ``record Pair<A, B>(A first, B second)``
declared in the prompt (Java has no tuples; longer tuples are dropped). Literals spell their
types out (``new ArrayList<Long>(Arrays.asList(1L, 2L))``) so no inference is needed.

Java cannot open a file descriptor by number through its public API, and opening
``/proc/self/fd/N`` of the harness's pipe fails for the unprivileged sandbox user, so the
test main reaches the completion token's pipes through ``FileDescriptor``'s private ``fd``
field; ``java --add-opens java.base/java.io=ALL-UNNAMED`` allows exactly that.
"""

from __future__ import annotations

from codekiln.evaluate.multiple.base import C_ESCAPES, TOLERANCE, Language, escape
from codekiln.evaluate.multiple.infer import Type, Unexpressible
from codekiln.evaluate.multiple.translate import Spec
from codekiln.evaluate.sandbox import Limits
from codekiln.evaluate.tasks import Program

PREAMBLE = "import java.util.*;\nimport java.util.stream.*;\n\n"
PAIR = "record Pair<A, B>(A first, B second) {}\n\n"

HARNESS = """
    static boolean ckEq(Object a, Object b) {
        if (a == null || b == null) return a == b;
        if (a instanceof Double || b instanceof Double) {
            if (!(a instanceof Number) || !(b instanceof Number)) return false;
            double x = ((Number) a).doubleValue(), y = ((Number) b).doubleValue();
            return Math.abs(x - y) <= TOLERANCE * Math.max(1.0, Math.abs(y));
        }
        if (a instanceof List<?> x && b instanceof List<?> y) {
            if (x.size() != y.size()) return false;
            for (int i = 0; i < x.size(); i++) if (!ckEq(x.get(i), y.get(i))) return false;
            return true;
        }
        if (a instanceof Map<?, ?> x && b instanceof Map<?, ?> y) {
            if (x.size() != y.size()) return false;
            for (Map.Entry<?, ?> e : y.entrySet()) {
                Object key = e.getKey();
                if (!x.containsKey(key) || !ckEq(x.get(key), e.getValue())) return false;
            }
            return true;
        }
        if (a instanceof Optional<?> x && b instanceof Optional<?> y) {
            return x.isPresent() == y.isPresent() && (x.isEmpty() || ckEq(x.get(), y.get()));
        }
        PAIR_CASE
        return a.equals(b);
    }

    static byte[] ckNonce = null;
    static java.io.FileOutputStream ckOut = null;

    static java.io.FileDescriptor ckFd(String number) throws Exception {
        java.io.FileDescriptor fd = new java.io.FileDescriptor();
        java.lang.reflect.Field field = java.io.FileDescriptor.class.getDeclaredField("fd");
        field.setAccessible(true);
        field.setInt(fd, Integer.parseInt(number));
        return fd;
    }

    static void ckTokenBegin() throws Exception {
        String in = System.getenv("CODEKILN_TOKEN_IN"), out = System.getenv("CODEKILN_TOKEN_OUT");
        if (in == null || out == null) return;
        // Not readAllBytes: on JDK 17 it asks a pipe for its position and fails.
        java.io.ByteArrayOutputStream nonce = new java.io.ByteArrayOutputStream();
        try (java.io.FileInputStream stream = new java.io.FileInputStream(ckFd(in))) {
            byte[] buffer = new byte[256];
            for (int n; (n = stream.read(buffer)) > 0; ) nonce.write(buffer, 0, n);
        }
        ckNonce = nonce.toByteArray();
        ckOut = new java.io.FileOutputStream(ckFd(out));
    }

    static void ckTokenEnd() throws Exception {
        if (ckOut == null) return;
        ckOut.write(ckNonce);
        ckOut.close();
    }

    static void ckCheck(int n, Object actual, Object expected) {
        if (!ckEq(actual, expected)) {
            System.err.println("case " + n + " failed: got " + actual + ", expected " + expected);
            System.exit(1);
        }
    }
""".replace("TOLERANCE", repr(TOLERANCE))

PAIR_CASE = (
    "if (a instanceof Pair<?, ?> x && b instanceof Pair<?, ?> y) "
    "return ckEq(x.first(), y.first()) && ckEq(x.second(), y.second());"
)
JVM = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xshare:auto"]


class Java(Language):
    key = "java"
    name = "Java"
    extension = "java"
    stop = ("\n    }", "\n}", "\n    public static void main", "\n```")
    close = "\n    }\n"
    binaries = ("javac", "java")
    unions = False
    reserved = frozenset(
        {"char", "int", "long", "new", "class", "default", "package", "final", "static",
         "this", "short", "byte", "double", "float", "boolean", "switch", "case", "native"}
    )  # fmt: skip
    # The JVM sizes its heap from the machine and reserves address space for it, and runs a
    # dozen threads: no address-space limit, -Xmx bounds the heap instead.
    limits = Limits(timeout=20.0, cpu_seconds=20, memory_bytes=None, processes=512)

    def type_name(self, t: Type, boxed: bool = False) -> str:
        if t.kind in ("int", "float", "bool"):
            primitive = {"int": "long", "float": "double", "bool": "boolean"}[t.kind]
            boxes = {"long": "Long", "double": "Double", "boolean": "Boolean"}
            return boxes[primitive] if boxed else primitive
        if t.kind == "str":
            return "String"
        args = [self.type_name(a, boxed=True) for a in t.args]
        if t.kind == "list":
            return f"ArrayList<{args[0]}>"
        if t.kind == "tuple" and len(args) == 2:
            return f"Pair<{args[0]}, {args[1]}>"
        if t.kind == "dict":
            return f"HashMap<{args[0]}, {args[1]}>"
        if t.kind == "optional":
            return f"Optional<{args[0]}>"
        raise Unexpressible(f"Java has no type for {t}")

    def check_type(self, t: Type) -> None:
        super().check_type(t)
        self.type_name(t)

    def int_literal(self, value: int) -> str:
        return f"{value}L"

    def str_literal(self, value: str) -> str:
        return '"' + escape(value, C_ESCAPES, _java_unicode) + '"'

    def none_literal(self, t: Type) -> str:
        return "Optional.empty()"

    def some_literal(self, text: str, t: Type) -> str:
        return f"Optional.of({text})"

    def list_literal(self, items: list[str], t: Type) -> str:
        kind = self.type_name(t)
        if not items:
            return f"new {kind}()"
        return f"new {kind}(Arrays.asList({', '.join(items)}))"

    def tuple_literal(self, items: list[str], t: Type) -> str:
        return f"new {self.type_name(t)}({', '.join(items)})"

    def dict_literal(self, pairs: list[tuple[str, str]], t: Type) -> str:
        entries = ", ".join(f"Map.entry({k}, {v})" for k, v in pairs)
        return f"new {self.type_name(t)}(Map.ofEntries({entries}))"

    def doc_comment(self, spec: Spec, indent: str = "    ") -> str:
        # javac reads \\u escapes everywhere, comments included.
        return super().doc_comment(spec, indent).replace("\\u", "\\\\u")

    def prompt(self, spec: Spec) -> str:
        params = ", ".join(f"{self.type_name(p.type)} {self.ident(p.name)}" for p in spec.params)
        returns = self.type_name(spec.returns)
        header = f"    public static {returns} {self.ident(spec.name)}({params}) {{\n"
        pair = PAIR if self._uses_pair(spec) else ""
        return PREAMBLE + pair + "class Problem {\n" + self.doc_comment(spec) + header

    def _uses_pair(self, spec: Spec) -> bool:
        types = [spec.returns, *(p.type for p in spec.params)]
        return any(inner.kind == "tuple" for t in types for inner in t.walk())

    def harness(self, spec: Spec) -> str:
        checks = "".join(
            f"        ckCheck({n}, {call}, {expected});\n"
            for n, (call, expected) in enumerate(self.cases(spec), 1)
        )
        helpers = HARNESS.replace("PAIR_CASE", PAIR_CASE if self._uses_pair(spec) else "")
        main = (
            "\n    public static void main(String[] args) throws Exception {\n"
            f"        ckTokenBegin();\n{checks}        ckTokenEnd();\n    }}\n}}\n"
        )
        return self.close + helpers + main

    def program(self, source: str) -> Program:
        return Program(
            files={"Problem.java": source},
            compile=["javac", *(f"-J{flag}" for flag in JVM), "-J-Xmx512m", "Problem.java"],
            command=[
                "java",
                *JVM,
                "-Xmx1g",
                "--add-opens",
                "java.base/java.io=ALL-UNNAMED",
                "Problem",
            ],
        )


def _java_unicode(code: int) -> str:
    if code > 0xFFFF:
        high, low = divmod(code - 0x10000, 0x400)
        return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"
    return f"\\u{code:04x}"
