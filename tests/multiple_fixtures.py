# ruff: noqa: E501 -- the bodies are code in other languages, kept as written
"""Reference solutions for tests/test_multiple.py: per language, a correct and a deliberately
wrong function body for ten HumanEval problems, written against MultiPL-E's rows (their
signatures, types and comparisons).

The problems cover the type shapes the rows use: list[float] -> bool (0), float -> float (2),
a tuple (8), an optional result (12), ints (13), strings (23, 27), list -> list (30), a dict
result (111) and a tuple of optionals (136). Bash has no dicts and Lua no nil inside tables:
they use 34 and 53 instead of 111 and 136. PHP and Java use 53 instead of a problem their rows
make unsolvable: PHP's HumanEval/23 declares `strlen`, which PHP already has, and Java's /136
expects `Optional.of(Optional.empty())` for a missing value; Go, which drops 12, uses 53 too.
"""

GOOD: dict[str, dict[str, str]] = {}
BAD: dict[str, dict[str, str]] = {}

JS_GOOD = {
    "HumanEval/0": """  for (let i = 0; i < numbers.length; i++)
    for (let j = i + 1; j < numbers.length; j++)
      if (Math.abs(numbers[i] - numbers[j]) < threshold) return true;
  return false;""",
    "HumanEval/2": "  return number % 1.0;",
    "HumanEval/8": "  return [numbers.reduce((a, b) => a + b, 0), numbers.reduce((a, b) => a * b, 1)];",
    "HumanEval/12": """  if (strings.length === 0) return undefined;
  return strings.reduce((a, b) => (b.length > a.length ? b : a));""",
    "HumanEval/13": "  while (b) { [a, b] = [b, a % b]; }\n  return a;",
    "HumanEval/23": "  return string.length;",
    "HumanEval/27": """  return [...string]
    .map((c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()))
    .join("");""",
    "HumanEval/30": "  return l.filter((x) => x > 0);",
    "HumanEval/111": """  const counts: { [k: string]: number } = {};
  for (const w of test.split(" ")) if (w) counts[w] = (counts[w] || 0) + 1;
  const most = Math.max(0, ...Object.values(counts));
  const out: { [k: string]: number } = {};
  for (const [k, v] of Object.entries(counts)) if (v === most) out[k] = v;
  return out;""",
    "HumanEval/136": """  const neg = lst.filter((x) => x < 0), pos = lst.filter((x) => x > 0);
  return [neg.length ? Math.max(...neg) : undefined, pos.length ? Math.min(...pos) : undefined];""",
}
JS_BAD = {
    "HumanEval/0": "  return false;",
    "HumanEval/2": "  return Math.floor(number);",
    "HumanEval/8": "  return [numbers.reduce((a, b) => a + b, 0), 0];",
    "HumanEval/12": "  if (strings.length === 0) return undefined;\n  return strings[0];",
    "HumanEval/13": "  return Math.min(a, b);",
    "HumanEval/23": "  return string.length + 1;",
    "HumanEval/27": "  return string.toUpperCase();",
    "HumanEval/30": "  return l.filter((x) => x >= 0);",
    "HumanEval/111": """  const counts: { [k: string]: number } = {};
  for (const w of test.split(" ")) if (w) counts[w] = (counts[w] || 0) + 1;
  return counts;""",
    "HumanEval/136": """  const neg = lst.filter((x) => x < 0), pos = lst.filter((x) => x > 0);
  return [neg.length ? Math.max(...neg) : undefined, pos.length ? Math.max(...pos) : undefined];""",
}
# The annotations are TypeScript-only; JavaScript gets the same bodies without them.
GOOD["ts"], BAD["ts"] = JS_GOOD, JS_BAD
GOOD["js"] = {k: v.replace(": { [k: string]: number }", "") for k, v in JS_GOOD.items()}
BAD["js"] = {k: v.replace(": { [k: string]: number }", "") for k, v in JS_BAD.items()}

GOOD["cpp"] = {
    "HumanEval/0": """    for (size_t i = 0; i < numbers.size(); i++)
        for (size_t j = i + 1; j < numbers.size(); j++)
            if (std::fabs(numbers[i] - numbers[j]) < threshold) return true;
    return false;""",
    "HumanEval/2": "    return number - std::floor(number);",
    "HumanEval/8": """    long s = 0, p = 1;
    for (long x : numbers) { s += x; p *= x; }
    return std::make_tuple(s, p);""",
    "HumanEval/12": """    if (strings.empty()) return std::nullopt;
    std::string best = strings[0];
    for (const auto& s : strings) if (s.size() > best.size()) best = s;
    return best;""",
    "HumanEval/13": "    while (b) { long t = a % b; a = b; b = t; }\n    return a;",
    "HumanEval/23": "    return string.size();",
    "HumanEval/27": """    for (auto& c : string) c = std::isupper((unsigned char)c) ? std::tolower(c) : std::toupper(c);
    return string;""",
    "HumanEval/30": """    std::vector<long> out;
    for (long x : l) if (x > 0) out.push_back(x);
    return out;""",
    "HumanEval/111": """    std::map<std::string, long> counts, out;
    std::istringstream in(test);
    std::string w;
    long most = 0;
    while (in >> w) most = std::max(most, ++counts[w]);
    for (auto& [k, v] : counts) if (v == most) out[k] = v;
    return out;""",
    "HumanEval/136": """    std::optional<long> neg, pos;
    for (long x : lst) {
        if (x < 0 && (!neg || x > *neg)) neg = x;
        if (x > 0 && (!pos || x < *pos)) pos = x;
    }
    return std::make_tuple(neg, pos);""",
}
BAD["cpp"] = {
    "HumanEval/0": "    return false;",
    "HumanEval/2": "    return std::floor(number);",
    "HumanEval/8": """    long s = 0;
    for (long x : numbers) s += x;
    return std::make_tuple(s, s);""",
    "HumanEval/12": "    if (strings.empty()) return std::nullopt;\n    return strings[0];",
    "HumanEval/13": "    return std::min(a, b);",
    "HumanEval/23": "    return 0;",
    "HumanEval/27": "    return string;",
    "HumanEval/30": """    std::vector<long> out;
    for (long x : l) if (x >= 0) out.push_back(x);
    return out;""",
    "HumanEval/111": """    std::map<std::string, long> counts;
    std::istringstream in(test);
    std::string w;
    while (in >> w) counts[w]++;
    return counts;""",
    "HumanEval/136": """    std::optional<long> neg, pos;
    for (long x : lst) {
        if (x < 0 && (!neg || x > *neg)) neg = x;
        if (x > 0 && (!pos || x < *pos)) pos = x;
    }
    return std::make_tuple(pos, neg);""",
}

GOOD["java"] = {
    "HumanEval/0": """        for (int i = 0; i < numbers.size(); i++)
            for (int j = i + 1; j < numbers.size(); j++)
                if (Math.abs(numbers.get(i) - numbers.get(j)) < threshold) return true;
        return false;""",
    "HumanEval/2": "        return (float) (number - Math.floor(number));",
    "HumanEval/8": """        long s = 0, p = 1;
        for (long x : numbers) { s += x; p *= x; }
        return new Pair<>(s, p);""",
    "HumanEval/12": """        if (strings.isEmpty()) return Optional.empty();
        String best = strings.get(0);
        for (String s : strings) if (s.length() > best.length()) best = s;
        return Optional.of(best);""",
    "HumanEval/13": "        while (b != 0) { long t = a % b; a = b; b = t; }\n        return a;",
    "HumanEval/23": "        return string.length();",
    "HumanEval/27": """        StringBuilder out = new StringBuilder();
        for (char c : string.toCharArray())
            out.append(Character.isUpperCase(c) ? Character.toLowerCase(c) : Character.toUpperCase(c));
        return out.toString();""",
    "HumanEval/30": """        return l.stream().filter(x -> x > 0).collect(Collectors.toCollection(ArrayList::new));""",
    "HumanEval/111": """        HashMap<String, Long> counts = new HashMap<>(), out = new HashMap<>();
        long most = 0;
        for (String w : test.split(" ")) {
            if (w.isEmpty()) continue;
            counts.merge(w, 1L, Long::sum);
            most = Math.max(most, counts.get(w));
        }
        for (Map.Entry<String, Long> e : counts.entrySet())
            if (e.getValue() == most) out.put(e.getKey(), e.getValue());
        return out;""",
    "HumanEval/53": "        return x + y;",
}
BAD["java"] = {
    "HumanEval/0": "        return false;",
    "HumanEval/2": "        return (float) Math.floor(number);",
    "HumanEval/8": """        long s = 0;
        for (long x : numbers) s += x;
        return new Pair<>(s, s);""",
    "HumanEval/12": """        if (strings.isEmpty()) return Optional.empty();
        return Optional.of(strings.get(0));""",
    "HumanEval/13": "        return Math.min(a, b);",
    "HumanEval/23": "        return 0;",
    "HumanEval/27": "        return string;",
    "HumanEval/30": """        return l.stream().filter(x -> x >= 0).collect(Collectors.toCollection(ArrayList::new));""",
    "HumanEval/111": """        HashMap<String, Long> counts = new HashMap<>();
        for (String w : test.split(" ")) if (!w.isEmpty()) counts.merge(w, 1L, Long::sum);
        return counts;""",
    "HumanEval/53": "        return x - y;",
}

GOOD["rs"] = {
    "HumanEval/0": """    for i in 0..numbers.len() {
        for j in (i + 1)..numbers.len() {
            if (numbers[i] - numbers[j]).abs() < threshold {
                return true;
            }
        }
    }
    false""",
    "HumanEval/2": "    number - number.floor()",
    "HumanEval/8": "    (numbers.iter().sum(), numbers.iter().product())",
    "HumanEval/12": """    let mut best: Option<String> = None;
    for s in strings {
        if best.as_ref().map_or(true, |b| s.len() > b.len()) {
            best = Some(s);
        }
    }
    best""",
    "HumanEval/13": """    let (mut a, mut b) = (a, b);
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a""",
    "HumanEval/23": "    string.len() as isize",
    "HumanEval/27": """    string
        .chars()
        .map(|c| if c.is_uppercase() { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() })
        .collect()""",
    "HumanEval/30": "    l.into_iter().filter(|&x| x > 0).collect()",
    "HumanEval/111": """    let mut counts: HashMap<String, isize> = HashMap::new();
    for w in test.split_whitespace() {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    counts.into_iter().filter(|(_, v)| *v == most).collect()""",
    "HumanEval/136": """    let neg = lst.iter().copied().filter(|&x| x < 0).max();
    let pos = lst.iter().copied().filter(|&x| x > 0).min();
    (neg, pos)""",
}
BAD["rs"] = {
    "HumanEval/0": "    false",
    "HumanEval/2": "    number.floor()",
    "HumanEval/8": "    (numbers.iter().sum(), 0)",
    "HumanEval/12": "    strings.into_iter().next()",
    "HumanEval/13": "    a.min(b)",
    "HumanEval/23": "    0",
    "HumanEval/27": "    string",
    "HumanEval/30": "    l.into_iter().filter(|&x| x >= 0).collect()",
    "HumanEval/111": """    let mut counts: HashMap<String, isize> = HashMap::new();
    for w in test.split_whitespace() {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    counts""",
    "HumanEval/136": """    let neg = lst.iter().copied().filter(|&x| x < 0).max();
    let pos = lst.iter().copied().filter(|&x| x > 0).min();
    (pos, neg)""",
}

# MultiPL-E's Go rows import only testing and fmt: the bodies use neither math nor strings.
GOOD["go"] = {
    "HumanEval/0": """\tfor i := range numbers {
\t\tfor j := i + 1; j < len(numbers); j++ {
\t\t\td := numbers[i] - numbers[j]
\t\t\tif d < 0 {
\t\t\t\td = -d
\t\t\t}
\t\t\tif d < threshold {
\t\t\t\treturn true
\t\t\t}
\t\t}
\t}
\treturn false""",
    "HumanEval/2": "\treturn number - float64(int(number))",
    "HumanEval/8": """\tsum, product := 0, 1
\tfor _, x := range numbers {
\t\tsum += x
\t\tproduct *= x
\t}
\treturn []interface{}{sum, product}""",
    "HumanEval/13": "\tfor b != 0 {\n\t\ta, b = b, a%b\n\t}\n\treturn a",
    "HumanEval/23": "\treturn len(myString)",
    "HumanEval/27": """\tout := []rune{}
\tfor _, r := range myString {
\t\tif r >= 'a' && r <= 'z' {
\t\t\tr -= 32
\t\t} else if r >= 'A' && r <= 'Z' {
\t\t\tr += 32
\t\t}
\t\tout = append(out, r)
\t}
\treturn string(out)""",
    "HumanEval/30": """\tout := []int{}
\tfor _, x := range l {
\t\tif x > 0 {
\t\t\tout = append(out, x)
\t\t}
\t}
\treturn out""",
    "HumanEval/53": "\treturn x + y",
    "HumanEval/111": """\tcounts := map[string]int{}
\tmost := 0
\tword := ""
\tfor _, r := range test + " " {
\t\tif r != ' ' {
\t\t\tword += string(r)
\t\t\tcontinue
\t\t}
\t\tif word != "" {
\t\t\tcounts[word]++
\t\t\tif counts[word] > most {
\t\t\t\tmost = counts[word]
\t\t\t}
\t\t}
\t\tword = ""
\t}
\tout := map[string]int{}
\tfor k, v := range counts {
\t\tif v == most {
\t\t\tout[k] = v
\t\t}
\t}
\treturn out""",
    "HumanEval/136": """\tvar neg, pos interface{}
\tfor _, x := range lst {
\t\tif x < 0 && (neg == nil || x > neg.(int)) {
\t\t\tneg = x
\t\t}
\t\tif x > 0 && (pos == nil || x < pos.(int)) {
\t\t\tpos = x
\t\t}
\t}
\treturn []interface{}{neg, pos}""",
}
BAD["go"] = {
    "HumanEval/0": "\treturn false",
    "HumanEval/2": "\treturn float64(int(number))",
    "HumanEval/8": "\treturn []interface{}{0, 0}",
    "HumanEval/13": "\tif a < b {\n\t\treturn a\n\t}\n\treturn b",
    "HumanEval/23": "\treturn 0",
    "HumanEval/27": "\treturn myString",
    "HumanEval/30": """\tout := []int{}
\tfor _, x := range l {
\t\tif x >= 0 {
\t\t\tout = append(out, x)
\t\t}
\t}
\treturn out""",
    "HumanEval/53": "\treturn x - y",
    "HumanEval/111": "\treturn map[string]int{}",
    "HumanEval/136": "\treturn []interface{}{nil, nil}",
}

GOOD["php"] = {
    "HumanEval/0": """    for ($i = 0; $i < count($numbers); $i++)
        for ($j = $i + 1; $j < count($numbers); $j++)
            if (abs($numbers[$i] - $numbers[$j]) < $threshold) return true;
    return false;""",
    "HumanEval/2": "    return $number - floor($number);",
    "HumanEval/8": "    return array(array_sum($numbers), array_product($numbers));",
    "HumanEval/12": """    if (count($strings) == 0) return null;
    $best = $strings[0];
    foreach ($strings as $s) if (strlen($s) > strlen($best)) $best = $s;
    return $best;""",
    "HumanEval/13": "    while ($b) { [$a, $b] = [$b, $a % $b]; }\n    return $a;",
    "HumanEval/53": "    return $x + $y;",
    "HumanEval/27": """    $out = "";
    foreach (str_split($string) as $c) $out .= ctype_upper($c) ? strtolower($c) : strtoupper($c);
    return $out;""",
    # array_filter keeps the old keys: the harness compares lists by position.
    "HumanEval/30": "    return array_values(array_filter($l, fn($x) => $x > 0));",
    "HumanEval/111": """    $counts = array();
    foreach (explode(" ", $test) as $w) if ($w !== "") $counts[$w] = ($counts[$w] ?? 0) + 1;
    if (!$counts) return array();
    $most = max($counts);
    return array_filter($counts, fn($v) => $v == $most);""",
    "HumanEval/136": """    $neg = null;
    $pos = null;
    foreach ($lst as $x) {
        if ($x < 0 && ($neg === null || $x > $neg)) $neg = $x;
        if ($x > 0 && ($pos === null || $x < $pos)) $pos = $x;
    }
    return array($neg, $pos);""",
}
BAD["php"] = {
    "HumanEval/0": "    return false;",
    "HumanEval/2": "    return floor($number);",
    "HumanEval/8": "    return array(array_sum($numbers), 0);",
    "HumanEval/12": "    if (count($strings) == 0) return null;\n    return $strings[0];",
    "HumanEval/13": "    return min($a, $b);",
    "HumanEval/53": "    return $x - $y;",
    "HumanEval/27": "    return $string;",
    "HumanEval/30": "    return array_filter($l, fn($x) => $x >= 0);",
    "HumanEval/111": """    $counts = array();
    foreach (explode(" ", $test) as $w) if ($w !== "") $counts[$w] = ($counts[$w] ?? 0) + 1;
    return $counts;""",
    "HumanEval/136": "    return array(null, null);",
}

GOOD["rb"] = {
    "HumanEval/0": "  numbers.combination(2).any? { |a, b| (a - b).abs < threshold }",
    "HumanEval/2": "  number % 1.0",
    "HumanEval/8": "  [numbers.sum, numbers.reduce(1, :*)]",
    "HumanEval/12": """  return nil if strings.empty?
  strings.reduce { |a, b| b.length > a.length ? b : a }""",
    "HumanEval/13": "  a.gcd(b)",
    "HumanEval/23": "  string.length",
    "HumanEval/27": "  string.swapcase",
    "HumanEval/30": "  l.select { |x| x > 0 }",
    "HumanEval/111": """  counts = test.split(" ").reject(&:empty?).tally
  most = counts.values.max
  counts.select { |_, v| v == most }""",
    "HumanEval/136": "  [lst.select(&:negative?).max, lst.select(&:positive?).min]",
}
BAD["rb"] = {
    "HumanEval/0": "  false",
    "HumanEval/2": "  number.floor",
    "HumanEval/8": "  [numbers.sum, 0]",
    "HumanEval/12": "  strings.first",
    "HumanEval/13": "  [a, b].min",
    "HumanEval/23": "  string.length - 1",
    "HumanEval/27": "  string.upcase",
    "HumanEval/30": "  l.select { |x| x >= 0 }",
    "HumanEval/111": '  test.split(" ").reject(&:empty?).tally',
    "HumanEval/136": "  [lst.select(&:negative?).min, lst.select(&:positive?).max]",
}

GOOD["lua"] = {
    "HumanEval/0": """  for i = 1, #numbers do
    for j = i + 1, #numbers do
      if math.abs(numbers[i] - numbers[j]) < threshold then return true end
    end
  end
  return false""",
    "HumanEval/2": "  return number % 1.0",
    "HumanEval/8": """  local s, p = 0, 1
  for _, x in ipairs(numbers) do s = s + x; p = p * x end
  return {s, p}""",
    "HumanEval/12": """  local best = nil
  for _, s in ipairs(strings) do
    if best == nil or #s > #best then best = s end
  end
  return best""",
    "HumanEval/13": "  while b ~= 0 do a, b = b, a % b end\n  return a",
    "HumanEval/23": "  return #string",
    "HumanEval/27": """  return (string:gsub("%a", function(c)
    if c:match("%u") then return c:lower() end
    return c:upper()
  end))""",
    "HumanEval/30": """  local out = {}
  for _, x in ipairs(l) do if x > 0 then table.insert(out, x) end end
  return out""",
    "HumanEval/111": """  local counts, most = {}, 0
  for w in test:gmatch("%S+") do
    counts[w] = (counts[w] or 0) + 1
    if counts[w] > most then most = counts[w] end
  end
  local out = {}
  for k, v in pairs(counts) do if v == most then out[k] = v end end
  return out""",
    "HumanEval/53": "  return x + y",
}
BAD["lua"] = {
    "HumanEval/0": "  return false",
    "HumanEval/2": "  return math.floor(number)",
    "HumanEval/8": "  return {0, 0}",
    "HumanEval/12": "  return strings[1]",
    "HumanEval/13": "  return math.min(a, b)",
    "HumanEval/23": "  return 0",
    "HumanEval/27": "  return string:upper()",
    "HumanEval/30": """  local out = {}
  for _, x in ipairs(l) do if x >= 0 then table.insert(out, x) end end
  return out""",
    "HumanEval/111": """  local counts = {}
  for w in test:gmatch("%S+") do counts[w] = (counts[w] or 0) + 1 end
  return counts""",
    "HumanEval/53": "  return x - y",
}

GOOD["pl"] = {
    "HumanEval/0": """    for my $i (0 .. $#$numbers) {
        for my $j ($i + 1 .. $#$numbers) {
            return 1 if abs($numbers->[$i] - $numbers->[$j]) < $threshold;
        }
    }
    return "";""",
    "HumanEval/2": "    return $number - int($number);",
    "HumanEval/8": """    my ($s, $p) = (0, 1);
    for my $x (@$numbers) { $s += $x; $p *= $x; }
    return [$s, $p];""",
    "HumanEval/12": """    my $best;
    for my $s (@$strings) { $best = $s if !defined $best || length($s) > length($best); }
    return $best;""",
    "HumanEval/13": "    while ($b) { ($a, $b) = ($b, $a % $b); }\n    return $a;",
    "HumanEval/23": "    return length($string);",
    "HumanEval/27": "    (my $out = $string) =~ tr/a-zA-Z/A-Za-z/;\n    return $out;",
    "HumanEval/30": "    return [grep { $_ > 0 } @$l];",
    "HumanEval/111": """    my %counts;
    $counts{$_}++ for grep { $_ ne "" } split / /, $test;
    my $most = 0;
    for (values %counts) { $most = $_ if $_ > $most; }
    return { map { $_ => $counts{$_} } grep { $counts{$_} == $most } keys %counts };""",
    "HumanEval/136": """    my ($neg, $pos);
    for my $x (@$lst) {
        $neg = $x if $x < 0 && (!defined $neg || $x > $neg);
        $pos = $x if $x > 0 && (!defined $pos || $x < $pos);
    }
    return [$neg, $pos];""",
}
BAD["pl"] = {
    "HumanEval/0": "    return 0;",
    "HumanEval/2": "    return int($number);",
    "HumanEval/8": "    return [0, 0];",
    "HumanEval/12": "    return $strings->[0];",
    "HumanEval/13": "    return $a < $b ? $a : $b;",
    "HumanEval/23": "    return 0;",
    "HumanEval/27": "    return uc($string);",
    "HumanEval/30": "    return [grep { $_ >= 0 } @$l];",
    "HumanEval/111": """    my %counts;
    $counts{$_}++ for grep { $_ ne "" } split / /, $test;
    return \\%counts;""",
    "HumanEval/136": "    return [undef, undef];",
}

GOOD["sh"] = {
    "HumanEval/0": """  local -a xs=($1)
  local i j
  for ((i = 0; i < ${#xs[@]}; i++)); do
    for ((j = i + 1; j < ${#xs[@]}; j++)); do
      if awk -v a="${xs[i]}" -v b="${xs[j]}" -v t="$2" \\
          'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < t) }'; then
        echo true
        return
      fi
    done
  done
  echo false""",
    "HumanEval/2": """  awk -v x="$1" 'BEGIN { s = sprintf("%.10g", x - int(x)); if (s !~ /[.]/) s = s ".0"; print s }'""",
    "HumanEval/8": """  local s=0 p=1 x
  for x in $1; do s=$((s + x)); p=$((p * x)); done
  echo "$s $p\"""",
    "HumanEval/12": """  local best="" x found=0
  for x in $1; do
    if (( ! found || ${#x} > ${#best} )); then best=$x; found=1; fi
  done
  if (( found )); then echo "$best"; else echo None; fi""",
    "HumanEval/13": """  local a=$1 b=$2 t
  while (( b )); do t=$((a % b)); a=$b; b=$t; done
  echo $a""",
    "HumanEval/23": "  echo ${#1}",
    "HumanEval/27": """  echo "$1" | tr 'a-zA-Z' 'A-Za-z'""",
    "HumanEval/30": """  local out=() x
  for x in $1; do (( x > 0 )) && out+=("$x"); done
  echo "${out[*]}\"""",
    "HumanEval/34": """  printf '%s\\n' $1 | sort -n -u | tr '\\n' ' ' | sed 's/ $//'""",
    "HumanEval/53": "  echo $(( $1 + $2 ))",
}
BAD["sh"] = {
    "HumanEval/0": "  echo false",
    "HumanEval/2": """  echo "${1%.*}\"""",
    "HumanEval/8": """  local s=0 x
  for x in $1; do s=$((s + x)); done
  echo "$s $s\"""",
    "HumanEval/12": """  local -a xs=($1)
  echo "${xs[0]}\"""",
    "HumanEval/13": "  echo $(( $1 < $2 ? $1 : $2 ))",
    "HumanEval/23": "  echo $(( ${#1} + 1 ))",
    "HumanEval/27": """  echo "${1^^}\"""",
    "HumanEval/30": """  local out=() x
  for x in $1; do (( x >= 0 )) && out+=("$x"); done
  echo "${out[*]}\"""",
    "HumanEval/34": """  echo "$1\"""",
    "HumanEval/53": "  echo $(( $1 - $2 ))",
}
