"""Rust (rustc, then the binary): ``i64``, ``f64``, ``bool``, ``String``, ``Vec``, tuples,
``HashMap`` and ``Option``. Arguments are owned values (``String``, ``Vec<i64>``), as in
MultiPL-E's Rust, so a body may consume them.

rustup installs rustc under the installing user's home, outside the sandbox's view and
PATH: the program's compile step calls the toolchain's own rustc by absolute path and the
task asks the sandbox to show that toolchain's folder (``ro_paths``). The comparison is a
trait, ``CkEq``, implemented for every type a result can have.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from codekiln.evaluate.multiple.base import C_ESCAPES, TOLERANCE, Language, escape
from codekiln.evaluate.multiple.infer import Type, Unexpressible
from codekiln.evaluate.multiple.translate import Spec
from codekiln.evaluate.sandbox import Limits
from codekiln.evaluate.tasks import Program

PREAMBLE = (
    "#![allow(unused_imports, dead_code, non_snake_case, unused_mut)]\n"
    "use std::collections::HashMap;\n\n"
)

HARNESS = """
trait CkEq {
    fn ck_eq(&self, other: &Self) -> bool;
}
impl CkEq for i64 {
    fn ck_eq(&self, other: &Self) -> bool { self == other }
}
impl CkEq for bool {
    fn ck_eq(&self, other: &Self) -> bool { self == other }
}
impl CkEq for String {
    fn ck_eq(&self, other: &Self) -> bool { self == other }
}
impl CkEq for f64 {
    fn ck_eq(&self, other: &Self) -> bool {
        (self - other).abs() <= TOLERANCE * other.abs().max(1.0)
    }
}
impl<T: CkEq> CkEq for Vec<T> {
    fn ck_eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a.ck_eq(b))
    }
}
impl<T: CkEq> CkEq for Option<T> {
    fn ck_eq(&self, other: &Self) -> bool {
        match (self, other) {
            (None, None) => true,
            (Some(a), Some(b)) => a.ck_eq(b),
            _ => false,
        }
    }
}
impl<A: CkEq, B: CkEq> CkEq for (A, B) {
    fn ck_eq(&self, other: &Self) -> bool { self.0.ck_eq(&other.0) && self.1.ck_eq(&other.1) }
}
impl<A: CkEq, B: CkEq, C: CkEq> CkEq for (A, B, C) {
    fn ck_eq(&self, other: &Self) -> bool {
        self.0.ck_eq(&other.0) && self.1.ck_eq(&other.1) && self.2.ck_eq(&other.2)
    }
}
impl<K: std::hash::Hash + Eq, V: CkEq> CkEq for HashMap<K, V> {
    fn ck_eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && other.iter().all(|(k, v)| self.get(k).map_or(false, |w| w.ck_eq(v)))
    }
}

fn ck_check<T: CkEq + std::fmt::Debug>(n: usize, actual: T, expected: T) {
    if !actual.ck_eq(&expected) {
        eprintln!("case {} failed: got {:?}, expected {:?}", n, actual, expected);
        std::process::exit(1);
    }
}

struct CkToken {
    nonce: Vec<u8>,
    out: Option<std::fs::File>,
}

fn ck_token_begin() -> CkToken {
    use std::io::Read;
    use std::os::unix::io::FromRawFd;
    let fd_in = std::env::var("CODEKILN_TOKEN_IN").ok().and_then(|v| v.parse::<i32>().ok());
    let fd_out = std::env::var("CODEKILN_TOKEN_OUT").ok().and_then(|v| v.parse::<i32>().ok());
    std::env::remove_var("CODEKILN_TOKEN_IN");
    std::env::remove_var("CODEKILN_TOKEN_OUT");
    let mut nonce = Vec::new();
    match (fd_in, fd_out) {
        (Some(i), Some(o)) => {
            let mut input = unsafe { std::fs::File::from_raw_fd(i) };
            input.read_to_end(&mut nonce).expect("read the completion token");
            CkToken { nonce, out: Some(unsafe { std::fs::File::from_raw_fd(o) }) }
        }
        _ => CkToken { nonce, out: None },
    }
}

fn ck_token_end(token: CkToken) {
    use std::io::Write;
    if let Some(mut out) = token.out {
        out.write_all(&token.nonce).expect("write the completion token");
    }
}
""".replace("TOLERANCE", repr(TOLERANCE))


@functools.cache
def rust_sysroot() -> str | None:
    """The active toolchain's folder (``rustc --print sysroot``), or None without rustc."""
    rustc = shutil.which("rustc")
    if rustc is None:
        return None
    try:
        done = subprocess.run(
            [rustc, "--print", "sysroot"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    root = done.stdout.strip()
    return root if done.returncode == 0 and os.path.isdir(root) else None


class Rust(Language):
    key = "rs"
    name = "Rust"
    extension = "rs"
    stop = ("\n}", "\nfn ", "\n//", "\n#", "\n```")
    binaries = ("rustc", "cc")
    unions = False
    reserved = frozenset({"type", "fn", "match", "ref", "mod", "move", "impl", "loop", "self"})
    # rustc runs threads and maps large files; the linker is a second process.
    limits = Limits(timeout=20.0, cpu_seconds=20, memory_bytes=None, processes=256)

    def ready(self) -> tuple[bool, str]:
        ok, note = super().ready()
        if ok and rust_sysroot() is None:
            return False, "rustc --print sysroot failed"
        return ok, note

    def ro_paths(self) -> tuple[str, ...]:
        root = rust_sysroot()
        system = ("/usr/", "/opt/", "/bin/", "/lib")
        return () if root is None or root.startswith(system) else (root,)

    def rustc(self) -> str:
        root = rust_sysroot()
        return os.path.join(root, "bin", "rustc") if root else "rustc"

    def type_name(self, t: Type) -> str:
        simple = {"int": "i64", "float": "f64", "bool": "bool", "str": "String"}
        if t.kind in simple:
            return simple[t.kind]
        args = [self.type_name(a) for a in t.args]
        if t.kind == "list":
            return f"Vec<{args[0]}>"
        if t.kind == "tuple" and 2 <= len(args) <= 3:
            return f"({', '.join(args)})"
        if t.kind == "dict" and t.args[0].kind in ("str", "int", "bool"):
            return f"HashMap<{args[0]}, {args[1]}>"
        if t.kind == "optional":
            return f"Option<{args[0]}>"
        raise Unexpressible(f"Rust has no type for {t}")

    def check_type(self, t: Type) -> None:
        super().check_type(t)
        self.type_name(t)

    def float_literal(self, value: float) -> str:
        text = repr(value)
        return text if any(c in text for c in ".e") else text + ".0"

    def str_literal(self, value: str) -> str:
        return 'String::from("' + escape(value, C_ESCAPES, lambda c: f"\\u{{{c:x}}}") + '")'

    def none_literal(self, t: Type) -> str:
        return "None"

    def some_literal(self, text: str, t: Type) -> str:
        return f"Some({text})"

    def list_literal(self, items: list[str], t: Type) -> str:
        return f"vec![{', '.join(items)}]"

    def tuple_literal(self, items: list[str], t: Type) -> str:
        return f"({', '.join(items)})"

    def dict_literal(self, pairs: list[tuple[str, str]], t: Type) -> str:
        return f"HashMap::from([{', '.join(f'({k}, {v})' for k, v in pairs)}])"

    def prompt(self, spec: Spec) -> str:
        params = ", ".join(f"{self.ident(p.name)}: {self.type_name(p.type)}" for p in spec.params)
        header = f"fn {self.ident(spec.name)}({params}) -> {self.type_name(spec.returns)} {{\n"
        return PREAMBLE + self.doc_comment(spec) + header

    def harness(self, spec: Spec) -> str:
        returns = self.type_name(spec.returns)
        checks = "".join(
            f"    ck_check::<{returns}>({n}, {call}, {expected});\n"
            for n, (call, expected) in enumerate(self.cases(spec), 1)
        )
        main = (
            f"\nfn main() {{\n    let token = ck_token_begin();\n{checks}"
            "    ck_token_end(token);\n}\n"
        )
        return self.close + HARNESS + main

    def program(self, source: str) -> Program:
        return Program(
            files={"main.rs": source},
            compile=[
                self.rustc(),
                "--edition",
                "2021",
                "-C",
                "opt-level=1",
                "-o",
                "main",
                "main.rs",
            ],
            command=["./main"],
        )
