"""The dynamic languages: PHP, Ruby, Lua and Perl. No types to write; lists, tuples and
dicts are each language's arrays and maps; ``None`` is null/nil/undef.

Each harness compares deeply, numbers within the tolerance, and reads the completion token
its own way: PHP through ``php://fd/N``, Ruby with ``IO.new(N)``, Perl with ``open(.., "<&=",
N)``; Lua's standard library cannot open a descriptor by number, so it reads and writes
the token through ``io.popen("bash -c 'cat <&N'")`` (the shell inherits the descriptors).
Lua tables cannot hold ``nil``, so problems with ``None`` inside a list are dropped there.
"""

from __future__ import annotations

from codekiln.evaluate.multiple.base import C_ESCAPES, TOLERANCE, Language, escape, scalar_keys
from codekiln.evaluate.multiple.infer import Type, Unexpressible
from codekiln.evaluate.multiple.translate import Spec
from codekiln.evaluate.sandbox import Limits
from codekiln.evaluate.tasks import Program

SCRIPT_LIMITS = Limits(timeout=10.0, cpu_seconds=10, memory_bytes=2 << 30, processes=64)

PHP_HARNESS = """
function ck_equal($a, $b) {
    if (is_array($a) && is_array($b)) {
        // A list compares by position: array_filter and friends keep the old keys.
        if (array_is_list($b)) $a = array_values($a);
        if (count($a) !== count($b)) return false;
        foreach ($b as $k => $v) {
            if (!array_key_exists($k, $a) || !ck_equal($a[$k], $v)) return false;
        }
        return true;
    }
    if (is_array($a) || is_array($b) || $a === null || $b === null) return $a === $b;
    if (is_bool($b)) return (is_bool($a) || is_int($a)) && (bool)$a === $b;
    if ((is_int($a) || is_float($a)) && (is_int($b) || is_float($b))) {
        return abs($a - $b) <= TOLERANCE * max(1, abs($b));
    }
    return $a === $b;
}

function ck_check($n, $actual, $expected) {
    if (!ck_equal($actual, $expected)) {
        fwrite(STDERR, "case $n failed: got " . var_export($actual, true) . "\\n");
        exit(1);
    }
}

function ck_token_begin() {
    $in = getenv("CODEKILN_TOKEN_IN");
    $out = getenv("CODEKILN_TOKEN_OUT");
    putenv("CODEKILN_TOKEN_IN");
    putenv("CODEKILN_TOKEN_OUT");
    if ($in === false || $out === false) return [null, null];
    $pipe = fopen("php://fd/" . $in, "r");
    $nonce = stream_get_contents($pipe);
    fclose($pipe);
    return [$nonce, fopen("php://fd/" . $out, "w")];
}

function ck_token_end($token) {
    if ($token[1] !== null) {
        fwrite($token[1], $token[0]);
        fclose($token[1]);
    }
}
""".replace("TOLERANCE", repr(TOLERANCE))

RUBY_HARNESS = """
def ck_equal(a, b)
  return a.nil? && b.nil? if a.nil? || b.nil?
  if a.is_a?(Array) && b.is_a?(Array)
    return a.length == b.length && a.zip(b).all? { |x, y| ck_equal(x, y) }
  end
  if a.is_a?(Hash) && b.is_a?(Hash)
    return a.length == b.length && b.all? { |k, v| a.key?(k) && ck_equal(a[k], v) }
  end
  if a.is_a?(Numeric) && b.is_a?(Numeric)
    return (a - b).abs <= TOLERANCE * [1, b.abs].max
  end
  a == b
end

def ck_check(n, actual, expected)
  return if ck_equal(actual, expected)
  $stderr.puts "case #{n} failed: got #{actual.inspect}, expected #{expected.inspect}"
  exit!(1)
end

def ck_token_begin
  fd_in = ENV.delete("CODEKILN_TOKEN_IN")
  fd_out = ENV.delete("CODEKILN_TOKEN_OUT")
  return [nil, nil] unless fd_in && fd_out
  pipe = IO.new(fd_in.to_i, "rb")
  nonce = pipe.read
  pipe.close
  [nonce, IO.new(fd_out.to_i, "wb")]
end

def ck_token_end(token)
  return if token[1].nil?
  token[1].write(token[0])
  token[1].close
end
""".replace("TOLERANCE", repr(TOLERANCE))

LUA_HARNESS = """
local function ck_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    return math.abs(a - b) <= TOLERANCE * math.max(1, math.abs(b))
  end
  if type(a) == "table" then
    for k, v in pairs(b) do
      if not ck_equal(a[k], v) then return false end
    end
    for k, _ in pairs(a) do
      if b[k] == nil then return false end
    end
    return true
  end
  return a == b
end

local function ck_check(n, actual, expected)
  if not ck_equal(actual, expected) then
    io.stderr:write("case " .. n .. " failed\\n")
    os.exit(1)
  end
end

local function ck_token_begin()
  local fd_in, fd_out = os.getenv("CODEKILN_TOKEN_IN"), os.getenv("CODEKILN_TOKEN_OUT")
  if not (fd_in and fd_out) then return nil end
  -- bash, not io.popen's sh: dash cannot name a descriptor above 9.
  local pipe = assert(io.popen("exec bash -c 'exec cat <&" .. math.tointeger(fd_in) .. "'", "r"))
  local nonce = pipe:read("a")
  pipe:close()
  return {nonce = nonce, out = math.tointeger(fd_out)}
end

local function ck_token_end(token)
  if token == nil then return end
  local pipe = assert(io.popen("exec bash -c 'exec cat >&" .. token.out .. "'", "w"))
  pipe:write(token.nonce)
  pipe:close()
end
""".replace("TOLERANCE", repr(TOLERANCE))

PERL_HARNESS = """
use Scalar::Util qw(looks_like_number);

sub ck_equal {
    my ($x, $y) = @_;
    return !defined $x && !defined $y if !defined $x || !defined $y;
    if (ref $x eq "ARRAY" && ref $y eq "ARRAY") {
        return 0 unless @$x == @$y;
        for my $i (0 .. $#$y) { return 0 unless ck_equal($x->[$i], $y->[$i]); }
        return 1;
    }
    if (ref $x eq "HASH" && ref $y eq "HASH") {
        return 0 unless keys %$x == keys %$y;
        for my $k (keys %$y) { return 0 unless exists $x->{$k} && ck_equal($x->{$k}, $y->{$k}); }
        return 1;
    }
    return 0 if ref $x || ref $y;
    # Perl's false is "" (or 0): a boolean result compares by truth.
    return 1 if ($x eq "" || $x eq "0") && ($y eq "" || $y eq "0");
    if (looks_like_number($x) && looks_like_number($y)) {
        my $scale = abs($y) > 1 ? abs($y) : 1;
        return abs($x - $y) <= TOLERANCE * $scale;
    }
    return $x eq $y;
}

sub ck_check {
    my ($n, $actual, $expected) = @_;
    return if ck_equal($actual, $expected);
    print STDERR "case $n failed\\n";
    exit 1;
}

sub ck_token_begin {
    my $in = delete $ENV{CODEKILN_TOKEN_IN};
    my $out = delete $ENV{CODEKILN_TOKEN_OUT};
    return undef unless defined $in && defined $out;
    open(my $pipe, "<&=", $in) or exit 3;
    local $/;
    my $nonce = <$pipe>;
    close($pipe);
    open(my $fh, ">&=", $out) or exit 3;
    return [$nonce, $fh];
}

sub ck_token_end {
    my ($token) = @_;
    return unless defined $token;
    my $fh = $token->[1];
    print $fh $token->[0];
    close($fh);
}
""".replace("TOLERANCE", repr(TOLERANCE))


class Php(Language):
    key = "php"
    name = "PHP"
    extension = "php"
    stop = ("\n}", "\nfunction ", "\n?>", "\n//", "\n```")
    binaries = ("php",)
    reserved = frozenset({"strlen"})  # PHP's own functions cannot be declared again
    limits = SCRIPT_LIMITS

    def str_literal(self, value: str) -> str:
        specials = {**C_ESCAPES, "$": "\\$"}
        return '"' + escape(value, specials, lambda c: f"\\u{{{c:x}}}") + '"'

    def list_literal(self, items: list[str], t: Type) -> str:
        return "array(" + ", ".join(items) + ")"

    def dict_literal(self, pairs: list[tuple[str, str]], t: Type) -> str:
        return "array(" + ", ".join(f"{k} => {v}" for k, v in pairs) + ")"

    def check_type(self, t: Type) -> None:
        super().check_type(t)
        for inner in t.walk():
            if inner.kind == "dict" and not scalar_keys(inner.args[0]):
                raise Unexpressible(f"PHP array keys of type {inner.args[0]}")

    def prompt(self, spec: Spec) -> str:
        params = ", ".join("$" + p.name for p in spec.params)
        header = f"function {self.ident(spec.name)}({params}) {{\n"
        return "<?php\n" + self.doc_comment(spec) + header

    def harness(self, spec: Spec) -> str:
        checks = "".join(
            f"    ck_check({n}, {call}, {expected});\n"
            for n, (call, expected) in enumerate(self.cases(spec), 1)
        )
        main = f"\nfunction ck_main() {{\n    $token = ck_token_begin();\n{checks}"
        main += "    ck_token_end($token);\n}\n\nck_main();\n"
        return self.close + PHP_HARNESS + main

    def program(self, source: str) -> Program:
        return Program(files={"main.php": source}, command=["php", "main.php"])


class Ruby(Language):
    key = "rb"
    name = "Ruby"
    extension = "rb"
    comment = "#"
    stop = ("\nend", "\ndef ", "\nclass ", "\nputs", "\n```")
    close = "\nend\n"
    binaries = ("ruby",)
    null = "nil"
    reserved = frozenset({"end", "def", "class", "module", "begin", "rescue", "then", "when"})
    limits = SCRIPT_LIMITS

    def str_literal(self, value: str) -> str:
        specials = {**C_ESCAPES, "#": "\\#"}
        return '"' + escape(value, specials, lambda c: f"\\u{{{c:x}}}") + '"'

    def dict_literal(self, pairs: list[tuple[str, str]], t: Type) -> str:
        return "{" + ", ".join(f"{k} => {v}" for k, v in pairs) + "}"

    def prompt(self, spec: Spec) -> str:
        # A capitalised name is a constant in Ruby, and a parameter cannot be one.
        params = ", ".join(self.ident(p.name[:1].lower() + p.name[1:]) for p in spec.params)
        return self.doc_comment(spec) + f"def {self.ident(spec.name)}({params})\n"

    def harness(self, spec: Spec) -> str:
        checks = "".join(
            f"  ck_check({n}, {call}, {expected})\n"
            for n, (call, expected) in enumerate(self.cases(spec), 1)
        )
        main = f"\ndef ck_main\n  token = ck_token_begin\n{checks}  ck_token_end(token)\nend\n"
        return self.close + RUBY_HARNESS + main + "\nck_main\n"

    def program(self, source: str) -> Program:
        return Program(files={"main.rb": source}, command=["ruby", "main.rb"])


class Lua(Language):
    key = "lua"
    name = "Lua"
    extension = "lua"
    comment = "--"
    stop = ("\nend", "\nlocal function ", "\nfunction ", "\n```")
    close = "\nend\n"
    binaries = ("lua5.4", "bash", "cat")
    null = "nil"
    reserved = frozenset(
        {"string", "table", "math", "end", "local", "function", "repeat", "until", "nil",
         "not", "and", "or", "then", "elseif", "goto", "in"}
    )  # fmt: skip
    # io.popen runs sh, bash and cat for the completion token.
    limits = Limits(timeout=10.0, cpu_seconds=10, memory_bytes=2 << 30, processes=64)

    def check_type(self, t: Type) -> None:
        super().check_type(t)
        for inner in t.walk():
            if inner.kind in ("list", "tuple", "dict") and any(
                arg.kind in ("optional", "none") for arg in inner.args
            ):
                raise Unexpressible(f"Lua tables cannot hold nil ({t})")

    def str_literal(self, value: str) -> str:
        return '"' + escape(value, C_ESCAPES, lambda c: f"\\u{{{c:x}}}") + '"'

    def list_literal(self, items: list[str], t: Type) -> str:
        return "{" + ", ".join(items) + "}"

    def dict_literal(self, pairs: list[tuple[str, str]], t: Type) -> str:
        return "{" + ", ".join(f"[{k}] = {v}" for k, v in pairs) + "}"

    def prompt(self, spec: Spec) -> str:
        params = ", ".join(self.ident(p.name) for p in spec.params)
        return self.doc_comment(spec) + f"local function {self.ident(spec.name)}({params})\n"

    def harness(self, spec: Spec) -> str:
        checks = "".join(
            f"  ck_check({n}, {call}, {expected})\n"
            for n, (call, expected) in enumerate(self.cases(spec), 1)
        )
        main = f"\nlocal function ck_main()\n  local token = ck_token_begin()\n{checks}"
        main += "  ck_token_end(token)\nend\n\nck_main()\n"
        return self.close + LUA_HARNESS + main

    def program(self, source: str) -> Program:
        return Program(files={"main.lua": source}, command=["lua5.4", "main.lua"])


class Perl(Language):
    key = "pl"
    name = "Perl"
    extension = "pl"
    comment = "#"
    stop = ("\n}", "\nsub ", "\n```")
    binaries = ("perl",)
    true, false, null = "1", '""', "undef"
    limits = SCRIPT_LIMITS

    def str_literal(self, value: str) -> str:
        specials = {**C_ESCAPES, "$": "\\$", "@": "\\@"}
        return '"' + escape(value, specials, lambda c: f"\\x{{{c:x}}}") + '"'

    def dict_literal(self, pairs: list[tuple[str, str]], t: Type) -> str:
        return "{" + ", ".join(f"{k} => {v}" for k, v in pairs) + "}"

    def prompt(self, spec: Spec) -> str:
        header = f"sub {self.ident(spec.name)} {{\n"
        if spec.params:
            header += f"    my({', '.join('$' + p.name for p in spec.params)}) = @_;\n"
        return self.doc_comment(spec) + header

    def harness(self, spec: Spec) -> str:
        checks = "".join(
            f"    ck_check({n}, {call}, {expected});\n"
            for n, (call, expected) in enumerate(self.cases(spec), 1)
        )
        main = f"\nsub ck_main {{\n    my $token = ck_token_begin();\n{checks}"
        main += "    ck_token_end($token);\n}\n\nck_main();\n"
        return self.close + PERL_HARNESS + main

    def program(self, source: str) -> Program:
        return Program(files={"main.pl": source}, command=["perl", "main.pl"])
