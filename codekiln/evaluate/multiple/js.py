"""JavaScript (node) and TypeScript (tsc, then node).

Lists and tuples are arrays, dicts are objects, None is ``undefined`` (a bare ``return;``).
TypeScript writes the inferred types in the signature (``number[]``, ``[string, boolean]``,
``{[key: string]: number}``, ``string | undefined``, unions as ``number | string``) and the
program must type-check (``tsc --strict false``), as a TypeScript program must.
"""

from __future__ import annotations

from codekiln.evaluate.multiple.base import C_ESCAPES, TOLERANCE, Language, escape, scalar_keys
from codekiln.evaluate.multiple.infer import Type, Unexpressible
from codekiln.evaluate.multiple.translate import Spec
from codekiln.evaluate.sandbox import Limits
from codekiln.evaluate.tasks import Program

# A JavaScript harness; TypeScript prefixes the declarations node's globals need.
JS_HARNESS = """
const ck_fs = require("fs");

function ck_token() {
  const fdIn = process.env.CODEKILN_TOKEN_IN, fdOut = process.env.CODEKILN_TOKEN_OUT;
  delete process.env.CODEKILN_TOKEN_IN;
  delete process.env.CODEKILN_TOKEN_OUT;
  if (!fdIn) return () => {};
  const nonce = ck_fs.readFileSync(Number(fdIn));
  ck_fs.closeSync(Number(fdIn));
  return () => { ck_fs.writeSync(Number(fdOut), nonce); ck_fs.closeSync(Number(fdOut)); };
}

function ck_equal(a, b) {
  if (a === b) return true;
  if (a === undefined || a === null || b === undefined || b === null) {
    return (a === undefined || a === null) && (b === undefined || b === null);
  }
  if (typeof a === "number" && typeof b === "number") {
    return Math.abs(a - b) <= TOLERANCE * Math.max(1, Math.abs(b));
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => ck_equal(x, b[i]));
  }
  if (typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && kb.every((k) => Object.prototype.hasOwnProperty.call(a, k)
      && ck_equal(a[k], b[k]));
  }
  return false;
}

function ck_check(n, actual, expected) {
  if (!ck_equal(actual, expected)) {
    console.error("case " + n + " failed: got " + JSON.stringify(actual)
      + ", expected " + JSON.stringify(expected));
    process.exit(1);
  }
}
""".replace("TOLERANCE", repr(TOLERANCE))

TS_DECLARATIONS = "declare const require: any;\ndeclare const process: any;\n"


class JavaScript(Language):
    key = "js"
    name = "JavaScript"
    extension = "js"
    stop = ("\n}", "\nfunction ", "\n/*", "\n//", "\nconsole.log", "\n```")
    binaries = ("node",)
    int_bound = 2**53  # beyond it a number is no longer an exact integer
    null = "undefined"
    reserved = frozenset({"arguments", "eval", "function", "var", "let", "new", "delete"})
    # V8 reserves gigabytes of address space up front and runs helper threads.
    limits = Limits(timeout=10.0, cpu_seconds=10, memory_bytes=None, processes=256)

    def str_literal(self, value: str) -> str:
        return '"' + escape(value, C_ESCAPES, _js_unicode) + '"'

    def dict_literal(self, pairs: list[tuple[str, str]], t: Type) -> str:
        return "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"

    def check_type(self, t: Type) -> None:
        super().check_type(t)
        for inner in t.walk():
            if inner.kind == "dict" and not scalar_keys(inner.args[0]):
                raise Unexpressible(f"object keys of type {inner.args[0]}")

    def signature(self, spec: Spec) -> str:
        params = ", ".join(self.ident(p.name) for p in spec.params)
        return f"function {self.ident(spec.name)}({params}) {{\n"

    def prompt(self, spec: Spec) -> str:
        return self.doc_comment(spec) + self.signature(spec)

    def harness(self, spec: Spec) -> str:
        checks = "".join(
            f"  ck_check({n}, {call}, {expected});\n"
            for n, (call, expected) in enumerate(self.cases(spec), 1)
        )
        main = f"\nfunction ck_main() {{\n  const done = ck_token();\n{checks}  done();\n}}\n"
        return self.close + JS_HARNESS + main + "\nck_main();\n"

    def program(self, source: str) -> Program:
        return Program(files={"main.js": source}, command=["node", "main.js"])


class TypeScript(JavaScript):
    key = "ts"
    name = "TypeScript"
    extension = "ts"
    binaries = ("tsc", "node")
    unions = True
    # tsc 7 is a native Go program: many threads and a large address space.
    limits = Limits(timeout=20.0, cpu_seconds=20, memory_bytes=None, processes=512)

    def type_name(self, t: Type) -> str:
        kind = t.kind
        if kind in ("int", "float"):
            return "number"
        if kind in ("bool", "str"):
            return {"bool": "boolean", "str": "string"}[kind]
        if kind == "none":
            return "undefined"
        if kind == "list":
            inner = self.type_name(t.args[0])
            return f"({inner})[]" if " " in inner else f"{inner}[]"
        if kind == "tuple":
            return "[" + ", ".join(self.type_name(a) for a in t.args) + "]"
        if kind == "dict":
            key = "number" if t.args[0].kind == "int" else "string"
            return f"{{[key: {key}]: {self.type_name(t.args[1])}}}"
        if kind == "optional":
            return f"{self.type_name(t.args[0])} | undefined"
        if kind == "union":
            return " | ".join(self.type_name(a) for a in t.args)
        raise Unexpressible(f"a value of type {t}")

    def signature(self, spec: Spec) -> str:
        params = ", ".join(f"{self.ident(p.name)}: {self.type_name(p.type)}" for p in spec.params)
        returns = self.type_name(spec.returns)
        return f"function {self.ident(spec.name)}({params}): {returns} {{\n"

    def harness(self, spec: Spec) -> str:
        js = super().harness(spec)
        return js.replace(JS_HARNESS, TS_DECLARATIONS + _typed(JS_HARNESS), 1)

    def program(self, source: str) -> Program:
        return Program(
            files={"main.ts": source},
            compile=["tsc", "--strict", "false", "--target", "es2022", "main.ts"],
            command=["node", "main.js"],
        )


def _typed(js: str) -> str:
    """The JavaScript harness with its parameters typed ``any`` (tsc rejects implicit any
    nowhere with --strict false, but be explicit for any setting)."""
    return (
        js.replace("function ck_equal(a, b)", "function ck_equal(a: any, b: any): boolean")
        .replace(
            "function ck_check(n, actual, expected)",
            "function ck_check(n: number, actual: any, expected: any): void",
        )
        .replace("(x, i) =>", "(x: any, i: number) =>")
        .replace("every((k) =>", "every((k: string) =>")
    )


def _js_unicode(code: int) -> str:
    return f"\\u{{{code:x}}}"
