"""MultiPL-E's own copies of the HumanEval problems, as edits of HumanEval's.

MultiPL-E (nuprl/MultiPL-E) translates its copies of the problems, not HumanEval's text:
``datasets/originals-with-cleaned-doctests/`` (docstrings whose examples were cleaned by hand
into ``>>> call`` / result pairs) for most problems, ``datasets/originals/`` for the rest. They
give every signature types, and some tests differ from HumanEval's. These are facts of the
benchmark, stored as the edits that turn HumanEval's problem into MultiPL-E's:

- ``SIGNATURES``: the ``def`` line where MultiPL-E's differs (types added);
- ``DOCSTRINGS``: per problem, ``(start, end, lines)``: the docstring's lines ``start:end``
  (after its doctest examples are written as Python, see ``translate.read_original``) are
  replaced by ``lines``;
- ``TESTS``: the same for the list of ``LEFT == RIGHT`` asserts;
- ``SKIPPED``: the problems MultiPL-E has no row for, in any language, and why.

The data was derived by comparing HumanEval with MultiPL-E's Python rows
(``prompts/humaneval-py-reworded.jsonl``), which write each original as it is, with its
examples and tests in Python.
"""

# ruff: noqa: E501 - quoted docstring and test lines stay whole

from __future__ import annotations

from collections.abc import Sequence

Edit = tuple[int, int, tuple[str, ...]]

# Each has a helper function in its prompt (the encoder its tests use, or `poly`), which
# MultiPL-E's prompt reader rejects: only the entry point may be defined.
SKIPPED: dict[int, str] = {
    32: "MultiPL-E has no row: the prompt also defines poly()",
    38: "MultiPL-E has no row: the prompt also defines encode_cyclic()",
    50: "MultiPL-E has no row: the prompt also defines encode_shift()",
}

# MultiPL-E's originals annotate every parameter and result (HumanEval leaves 131 bare).
SIGNATURES: dict[int, str] = {
    30: "def get_positive(l: List[int]) -> List[int]:",
    31: "def is_prime(n: int) -> bool:",
    33: "def sort_third(l: List[int]) -> List[int]:",
    34: "def unique(l: List[int]) -> List[int]:",
    35: "def max_element(l: List[int]) -> int:",
    36: "def fizz_buzz(n: int) -> int:",
    37: "def sort_even(l: List[int]) -> List[int]:",
    39: "def prime_fib(n: int) -> int:",
    40: "def triples_sum_to_zero(l: List[int]) -> bool:",
    41: "def car_race_collision(n: int) -> int:",
    42: "def incr_list(l: List[int]) -> List[int]:",
    43: "def pairs_sum_to_zero(l: List[int]) -> bool:",
    44: "def change_base(x: int, base: int) -> str:",
    45: "def triangle_area(a: int, h: int) -> float:",
    46: "def fib4(n: int) -> int:",
    47: "def median(l: List[int]) -> float:",
    48: "def is_palindrome(text: str) -> bool:",
    49: "def modp(n: int, p: int) -> int:",
    51: "def remove_vowels(text: str) -> str:",
    52: "def below_threshold(l: List[int], t: int) -> bool:",
    53: "def add(x: int, y: int) -> int:",
    54: "def same_chars(s0: str, s1: str) -> bool:",
    55: "def fib(n: int) -> int:",
    56: "def correct_bracketing(brackets: str) -> bool:",
    57: "def monotonic(l: List[int]) -> bool:",
    58: "def common(l1: List[int], l2: List[int]) -> List[int]:",
    59: "def largest_prime_factor(n: int) -> int:",
    60: "def sum_to_n(n: int) -> int:",
    61: "def correct_bracketing(brackets: str) -> bool:",
    62: "def derivative(xs: List[int]) -> List[int]:",
    63: "def fibfib(n: int) -> int:",
    64: "def vowels_count(s: str) -> int:",
    65: "def circular_shift(x: int, shift: int) -> str:",
    66: "def digitSum(s: str) -> int:",
    67: "def fruit_distribution(s: str, n: int) -> int:",
    68: "def pluck(arr: List[int]) -> List[int]:",
    69: "def search(lst: List[int]) -> int:",
    70: "def strange_sort_list(lst: List[int]) -> List[int]:",
    71: "def triangle_area(a: int, b: int, c: int) -> float:",
    72: "def will_it_fly(q: List[int], w: int) -> bool:",
    73: "def smallest_change(arr: List[int]) -> int:",
    74: "def total_match(lst1: List[str], lst2: List[str]) -> List[str]:",
    75: "def is_multiply_prime(a: int) -> bool:",
    76: "def is_simple_power(x: int, n: int) -> bool:",
    77: "def iscube(a: int) -> bool:",
    78: "def hex_key(num: str) -> int:",
    79: "def decimal_to_binary(decimal: int) -> str:",
    80: "def is_happy(s: str) -> bool:",
    81: "def numerical_letter_grade(grades: List[float]) -> List[str]:",
    82: "def prime_length(string: str) -> bool:",
    83: "def starts_one_ends(n: int) -> int:",
    84: "def solve(N: int) -> str:",
    85: "def add(lst: List[int]) -> int:",
    86: "def anti_shuffle(s: str) -> str:",
    87: "def get_row(lst: List[List[int]], x: int) -> List[Tuple[int, int]]:",
    88: "def sort_array(array: List[int]) -> List[int]:",
    89: "def encrypt(s: str) -> str:",
    90: "def next_smallest(lst: List[int]) -> Optional[int]:",
    91: "def is_bored(S: str) -> int:",
    92: "def any_int(x: float, y: float, z: float) -> bool:",
    93: "def encode(message: str) -> str:",
    94: "def skjkasdkd(lst: List[int]) -> int:",
    95: "def check_dict_case(dict: Dict[str, str]) -> bool:",
    96: "def count_up_to(n: int) -> List[int]:",
    97: "def multiply(a: int, b: int) -> int:",
    98: "def count_upper(s: str) -> int:",
    99: "def closest_integer(value: str) -> int:",
    100: "def make_a_pile(n: int) -> List[int]:",
    101: "def words_string(s: str) -> List[str]:",
    102: "def choose_num(x: int, y: int) -> int:",
    103: "def rounded_avg(n: int, m: int) -> Union[str, int]:",
    104: "def unique_digits(x: List[int]) -> List[int]:",
    105: "def by_length(arr: List[int]) -> List[str]:",
    106: "def f(n: int) -> List[int]:",
    107: "def even_odd_palindrome(n: int) -> Tuple[int, int]:",
    108: "def count_nums(arr: List[int]) -> int:",
    109: "def move_one_ball(arr: List[int]) -> bool:",
    110: "def exchange(lst1: List[int], lst2: List[int]) -> str:",
    111: "def histogram(test: str) -> Dict[str, int]:",
    112: "def reverse_delete(s: str, c: str) -> Tuple[str, bool]:",
    113: "def odd_count(lst: List[str]) -> List[str]:",
    114: "def minSubArraySum(nums: List[int]) -> int:",
    115: "def max_fill(grid: List[List[int]], capacity: int) -> int:",
    116: "def sort_array(arr: List[int]) -> List[int]:",
    117: "def select_words(s: str, n: int) -> List[str]:",
    118: "def get_closest_vowel(word: str) -> str:",
    119: "def match_parens(lst: List[str]) -> str:",
    120: "def maximum(arr: List[int], k: int) -> List[int]:",
    121: "def solution(lst: List[int]) -> int:",
    122: "def add_elements(arr: List[int], k: int) -> int:",
    123: "def get_odd_collatz(n: int) -> List[int]:",
    124: "def valid_date(date: str) -> bool:",
    125: "def split_words(txt: str) -> Union[List[str], int]:",
    126: "def is_sorted(lst: List[int]) -> bool:",
    127: "def intersection(interval1: Tuple[int, int], interval2: Tuple[int, int]) -> str:",
    128: "def prod_signs(arr: List[int]) -> Optional[int]:",
    129: "def minPath(grid: List[List[int]], k: int) -> List[int]:",
    130: "def tri(n: int) -> List[int]:",
    131: "def digits(n: int) -> int:",
    132: "def is_nested(string: str) -> bool:",
    133: "def sum_squares(lst: List[float]) -> int:",
    134: "def check_if_last_char_is_a_letter(txt: str) -> bool:",
    135: "def can_arrange(arr: List[int]) -> int:",
    136: "def largest_smallest_integers(lst: List[int]) -> Tuple[Optional[int], Optional[int]]:",
    137: "def compare_one(a: Union[int, float, str], b: Union[int, float, str]) -> Union[int, float, str, None]:",
    138: "def is_equal_to_sum_even(n: int) -> bool:",
    139: "def special_factorial(n: int) -> int:",
    140: "def fix_spaces(text: str) -> str:",
    141: "def file_name_check(file_name: str) -> str:",
    142: "def sum_squares(lst: List[int]) -> int:",
    143: "def words_in_sentence(sentence: str) -> str:",
    144: "def simplify(x: str, n: str) -> bool:",
    145: "def order_by_points(nums: List[int]) -> List[int]:",
    146: "def specialFilter(nums: List[int]) -> int:",
    147: "def get_max_triples(n: int) -> int:",
    148: "def bf(planet1: str, planet2: str) -> Tuple[str, ...]:",
    149: "def sorted_list_sum(lst: List[str]) -> List[str]:",
    150: "def x_or_y(n: int, x: int, y: int) -> int:",
    151: "def double_the_difference(lst: List[float]) -> int:",
    152: "def compare(game: List[int], guess: List[int]) -> List[int]:",
    153: "def Strongest_Extension(class_name: str, extensions: List[str]) -> str:",
    154: "def cycpattern_check(a: str, b: str) -> bool:",
    155: "def even_odd_count(num: int) -> Tuple[int, int]:",
    156: "def int_to_mini_roman(number: int) -> str:",
    157: "def right_angle_triangle(a: int, b: int, c: int) -> bool:",
    158: "def find_max(words: List[str]) -> str:",
    159: "def eat(number: int, need: int, remaining: int) -> List[int]:",
    160: "def do_algebra(operator: List[str], operand: List[int]) -> int:",
    161: "def solve(s: str) -> str:",
    162: "def string_to_md5(text: str) -> Optional[str]:",
    163: "def generate_integers(a: int, b: int) -> List[int]:",
}

# MultiPL-E's hand cleanings of HumanEval's doctests (datasets/originals-with-cleaned-doctests/):
# examples rewritten as `>>> call` / result pairs, results filled in, unreadable ones dropped.
DOCSTRINGS: dict[int, tuple[Edit, ...]] = {
    12: ((3, 4, ("    None",)),),
    51: ((4, 8, ()),),
    66: (
        (
            5,
            11,
            (
                "    >>> digitSum('')",
                "    0",
                "    >>> digitSum('abAB')",
                "    131",
                "    >>> digitSum('abcCd')",
                "    67",
                "    >>> digitSum('helloE')",
                "    69",
                "    >>> digitSum('woArBld')",
                "    131",
                "    >>> digitSum('aAaaaXa')",
                "    153",
            ),
        ),
    ),
    67: (
        (
            7,
            11,
            (
                "    >>> fruit_distribution('5 apples and 6 oranges', 19)",
                "    8",
                "    >>> fruit_distribution('0 apples and 1 oranges', 3)",
                "    2",
                "    >>> fruit_distribution('2 apples and 3 oranges', 100)",
                "    95",
                "    >>> fruit_distribution('100 apples and 1 oranges', 120)",
                "    19",
            ),
        ),
    ),
    68: (
        (
            10,
            13,
            (
                "    >>> pluck([4, 2, 3])",
                "    [2, 1]",
                "    Explanation: 2 has the smallest even value, and 2 has the smallest index.",
            ),
        ),
        (
            15,
            18,
            (
                "    >>> pluck([1, 2, 3])",
                "    [2, 1]",
                "    Explanation: 2 has the smallest even value, and 2 has the smallest index.",
            ),
        ),
        (
            20,
            22,
            (
                "    >>> pluck([])",
                "    []",
            ),
        ),
        (
            24,
            28,
            (
                "    >>> pluck([5, 0, 3, 0, 4, 2])",
                "    [0, 1]",
                "    Explanation: 0 is the smallest value, but  there are two zeros,",
                "                 so we will choose the first zero, which has the smallest index.",
            ),
        ),
    ),
    69: (
        (
            6,
            9,
            (
                "    >>> search([4, 1, 2, 2, 3, 1])",
                "    2",
                "    >>> search([1, 2, 2, 3, 3, 3, 4, 4, 4])",
                "    3",
                "    >>> search([5, 5, 4, 4, 4])",
                "    -1",
            ),
        ),
    ),
    70: (
        (
            6,
            9,
            (
                "    >>> strange_sort_list([1, 2, 3, 4])",
                "    [1, 4, 2, 3]",
                "    >>> strange_sort_list([5, 5, 5, 5])",
                "    [5, 5, 5, 5]",
                "    >>> strange_sort_list([])",
                "    []",
            ),
        ),
    ),
    71: (
        (
            7,
            9,
            (
                "    >>> triangle_area(3, 4, 5)",
                "    6.0",
                "    >>> triangle_area(1, 2, 10)",
                "    -1",
            ),
        ),
    ),
    72: (
        (
            5,
            6,
            (
                "    >>> will_it_fly([1, 2], 5)",
                "    False",
            ),
        ),
        (
            8,
            9,
            (
                "    >>> will_it_fly([3, 2, 3], 1)",
                "    False",
            ),
        ),
        (
            11,
            12,
            (
                "    >>> will_it_fly([3, 2, 3], 9)",
                "    True",
            ),
        ),
        (
            14,
            15,
            (
                "    >>> will_it_fly([3], 5)",
                "    True",
            ),
        ),
    ),
    73: (
        (
            6,
            9,
            (
                "    >>> smallest_change([1, 2, 3, 5, 4, 7, 9, 6])",
                "    4",
                "    >>> smallest_change([1, 2, 3, 4, 3, 2, 2])",
                "    1",
                "    >>> smallest_change([1, 2, 3, 2, 1])",
                "    0",
            ),
        ),
    ),
    74: (
        (
            7,
            12,
            (
                "    >>> total_match([], [])",
                "    []",
                "    >>> total_match(['hi', 'admin'], ['hI', 'Hi'])",
                "    ['hI', 'Hi']",
                "    >>> total_match(['hi', 'admin'], ['hi', 'hi', 'admin', 'project'])",
                "    ['hi', 'admin']",
                "    >>> total_match(['hi', 'admin'], ['hI', 'hi', 'hi'])",
                "    ['hI', 'hi', 'hi']",
                "    >>> total_match(['4'], ['1', '2', '3', '4', '5'])",
                "    ['4']",
            ),
        ),
    ),
    75: (
        (
            4,
            5,
            (
                "    >>> is_multiply_prime(30)",
                "    True",
            ),
        ),
    ),
    76: (
        (
            4,
            10,
            (
                "    >>> is_simple_power(1, 4)",
                "    True",
                "    >>> is_simple_power(2, 2)",
                "    True",
                "    >>> is_simple_power(8, 2)",
                "    True",
                "    >>> is_simple_power(3, 2)",
                "    False",
                "    >>> is_simple_power(3, 1)",
                "    False",
                "    >>> is_simple_power(5, 3)",
                "    False",
            ),
        ),
    ),
    77: (
        (
            5,
            11,
            (
                "    >>> iscube(1)",
                "    True",
                "    >>> iscube(2)",
                "    False",
                "    >>> iscube(-1)",
                "    True",
                "    >>> iscube(64)",
                "    True",
                "    >>> iscube(0)",
                "    True",
                "    >>> iscube(180)",
                "    False",
            ),
        ),
    ),
    78: (
        (
            11,
            16,
            (
                "    >>> hex_key('AB')",
                "    1",
                "    >>> hex_key('1077E')",
                "    2",
                "    >>> hex_key('ABED1A33')",
                "    4",
                "    >>> hex_key('123456789ABCDEF0')",
                "    6",
                "    >>> hex_key('2020')",
                "    2",
            ),
        ),
    ),
    79: (
        (
            8,
            10,
            (
                "    >>> decimal_to_binary(15)",
                "    'db1111db'",
                "    >>> decimal_to_binary(32)",
                "    'db100000db'",
            ),
        ),
    ),
    80: (
        (
            4,
            10,
            (
                "    >>> is_happy('a')",
                "    False",
                "    >>> is_happy('aa')",
                "    False",
                "    >>> is_happy('abcd')",
                "    True",
                "    >>> is_happy('aabb')",
                "    False",
                "    >>> is_happy('adb')",
                "    True",
                "    >>> is_happy('xyy')",
                "    False",
            ),
        ),
    ),
    81: (
        (
            22,
            23,
            (
                "    >>> grade_equation([4.0, 3, 1.7, 2, 3.5])",
                "    ['A+', 'B', 'C-', 'C', 'A-']",
            ),
        ),
    ),
    82: (
        (
            3,
            7,
            (
                "    >>> prime_length('Hello')",
                "    True",
                "    >>> prime_length('abcdcba')",
                "    True",
                "    >>> prime_length('kittens')",
                "    True",
                "    >>> prime_length('orange')",
                "    False",
            ),
        ),
    ),
    84: (
        (
            3,
            6,
            (
                "    >>> solve(1000)",
                "    '1'",
                "    >>> solve(150)",
                "    '110'",
                "    >>> solve(147)",
                "    '1100'",
            ),
        ),
    ),
    85: (
        (
            4,
            5,
            (
                "    >>> add([4, 2, 6, 7])",
                "    2",
            ),
        ),
    ),
    86: (
        (
            8,
            11,
            (
                "    >>> anti_shuffle('Hi')",
                "    'Hi'",
                "    >>> anti_shuffle('hello')",
                "    'ehllo'",
                "    >>> anti_shuffle('Hello World!!!')",
                "    'Hello !!!Wdlor'",
            ),
        ),
    ),
    87: (
        (
            11,
            18,
            (
                "    >>> get_row([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 1, 6], [1, 2, 3, 4, 5, 1]], 1)",
                "    [(0, 0), (1, 4), (1, 0), (2, 5), (2, 0)]",
                "    >>> get_row([], 1)",
                "    []",
                "    >>> get_row([[], [1], [1, 2, 3]], 3)",
                "    [(2, 2)]",
            ),
        ),
    ),
    88: (
        (
            9,
            13,
            (
                "    >>> sort_array([])",
                "    []",
                "    >>> sort_array([5])",
                "    [5]",
                "    >>> sort_array([2, 4, 3, 0, 1, 5])",
                "    [0, 1, 2, 3, 4, 5]",
                "    >>> sort_array([2, 4, 3, 0, 1, 5, 6])",
                "    [6, 5, 4, 3, 2, 1, 0]",
            ),
        ),
    ),
    89: (
        (
            5,
            9,
            (
                "    >>> encrypt('hi')",
                "    'lm'",
                "    >>> encrypt('asdfghjkl')",
                "    'ewhjklnop'",
                "    >>> encrypt('gf')",
                "    'kj'",
                "    >>> encrypt('et')",
                "    'ix'",
            ),
        ),
    ),
    90: (
        (
            4,
            4,
            (
                "    >>> next_smallest([1, 2, 3, 4, 5])",
                "    2",
                "    >>> next_smallest([5, 1, 4, 3, 2])",
                "    2",
                "    >>> next_smallest([])",
                "    None",
                "    >>> next_smallest([1, 1])",
                "    None",
            ),
        ),
        (5, 10, ()),
    ),
    92: (
        (
            6,
            7,
            (
                "    >>> any_int(5, 2, 7)",
                "    True",
            ),
        ),
        (
            8,
            9,
            (
                "    >>> any_int(3, 2, 2)",
                "    False",
            ),
        ),
        (
            10,
            11,
            (
                "    >>> any_int(3, -2, 1)",
                "    True",
            ),
        ),
        (
            12,
            13,
            (
                "    >>> any_int(3.6, -2.2, 2)",
                "    False",
            ),
        ),
    ),
    94: (
        (
            4,
            10,
            (
                "    >>> skjkasdkd([0, 3, 2, 1, 3, 5, 7, 4, 5, 5, 5, 2, 181, 32, 4, 32, 3, 2, 32, 324, 4, 3])",
                "    10",
                "    >>> skjkasdkd([1, 0, 1, 8, 2, 4597, 2, 1, 3, 40, 1, 2, 1, 2, 4, 2, 5, 1])",
                "    25",
                "    >>> skjkasdkd([1, 3, 1, 32, 5107, 34, 83278, 109, 163, 23, 2323, 32, 30, 1, 9, 3])",
                "    13",
                "    >>> skjkasdkd([0, 724, 32, 71, 99, 32, 6, 0, 5, 91, 83, 0, 5, 6])",
                "    11",
                "    >>> skjkasdkd([0, 81, 12, 3, 1, 21])",
                "    3",
                "    >>> skjkasdkd([0, 8, 1, 2, 1, 7])",
                "    7",
            ),
        ),
    ),
    95: (
        (
            5,
            10,
            (
                "    >>> check_dict_case({ 'a': 'apple', 'b': 'banana' })",
                "    True",
                "    >>> check_dict_case({ 'a': 'apple', 'A': 'banana', 'B': 'banana' })",
                "    False",
                "    >>> check_dict_case({ 'a': 'apple', 8: 'banana', 'a': 'apple' })",
                "    False",
                "    >>> check_dict_case({ 'Name': 'John', 'Age': '36', 'City': 'Houston' })",
                "    False",
                "    >>> check_dict_case({ 'STATE': 'NC', 'ZIP': '12345' })",
                "    True",
            ),
        ),
    ),
    96: (
        (
            3,
            9,
            (
                "    >>> count_up_to(5)",
                "    [2, 3]",
                "    >>> count_up_to(11)",
                "    [2, 3, 5, 7]",
                "    >>> count_up_to(0)",
                "    []",
                "    >>> count_up_to(20)",
                "    [2, 3, 5, 7, 11, 13, 17, 19]",
                "    >>> count_up_to(1)",
                "    []",
                "    >>> count_up_to(18)",
                "    [2, 3, 5, 7, 11, 13, 17]",
            ),
        ),
    ),
    97: (
        (
            4,
            8,
            (
                "    >>> multiply(148, 412)",
                "    16",
                "    >>> multiply(19, 28)",
                "    72",
                "    >>> multiply(2020, 1851)",
                "    0",
                "    >>> multiply(14, -15)",
                "    20",
            ),
        ),
    ),
    98: (
        (
            4,
            7,
            (
                "    >>> count_upper('aBCdEf')",
                "    1",
                "    >>> count_upper('abcdefg')",
                "    0",
                "    >>> count_upper('dBBE')",
                "    0",
            ),
        ),
    ),
    101: (
        (
            5,
            7,
            (
                "    >>> words_string('Hi, my name is John')",
                "    ['Hi', 'my', 'name', 'is', 'John']",
                "    >>> words_string('One, two, three, four, five, six')",
                "    ['One', 'two', 'three', 'four', 'five', 'six']",
            ),
        ),
    ),
    102: (
        (
            5,
            7,
            (
                "    >>> choose_num(12, 15)",
                "    14",
                "    >>> choose_num(13, 12)",
                "    -1",
            ),
        ),
    ),
    103: (
        (
            5,
            9,
            (
                "    >>> rounded_avg(1, 5)",
                "    '0b11'",
                "    >>> rounded_avg(7, 5)",
                "    -1",
                "    >>> rounded_avg(10, 20)",
                "    '0b1111'",
                "    >>> rounded_avg(20, 33)",
                "    '0b11010'",
            ),
        ),
    ),
    105: (
        (
            6,
            10,
            (
                "    >>> by_length([2, 1, 1, 4, 5, 8, 2, 3])",
                "    ['Eight', 'Five', 'Four', 'Three', 'Two', 'Two', 'One', 'One']",
            ),
        ),
        (
            12,
            14,
            (
                "    >>> by_length([])",
                "    []",
            ),
        ),
        (
            16,
            20,
            (
                "    >>> by_length([1, -1, 55])",
                "    ['One']",
            ),
        ),
    ),
    106: (
        (
            6,
            7,
            (
                "    >>> f(5)",
                "    [1, 2, 6, 24, 15]",
            ),
        ),
    ),
    107: (
        (
            6,
            8,
            (
                "    >>> even_odd_palindrome(3)",
                "    (1, 2)",
            ),
        ),
        (
            13,
            15,
            (
                "    >>> even_odd_palindrome(12)",
                "    (4, 6)",
            ),
        ),
    ),
    108: (
        (
            5,
            8,
            (
                "    >>> count_nums([])",
                "    0",
                "    >>> count_nums([-1, 11, -11])",
                "    1",
                "    >>> count_nums([1, 1, 2])",
                "    3",
            ),
        ),
    ),
    109: (
        (
            18,
            19,
            (
                "    >>> move_one_ball([3, 4, 5, 1, 2])",
                "    True",
            ),
        ),
        (
            21,
            22,
            (
                "    >>> move_one_ball([3, 5, 4, 1, 2])",
                "    False",
            ),
        ),
    ),
    110: (
        (
            8,
            10,
            (
                "    >>> exchange([1, 2, 3, 4], [1, 2, 3, 4])",
                "    'YES'",
                "    >>> exchange([1, 2, 3, 4], [1, 5, 3, 4])",
                "    'NO'",
            ),
        ),
    ),
    111: (
        (
            5,
            10,
            (
                "    >>> histogram('a b c')",
                "    { 'a': 1, 'b': 1, 'c': 1 }",
                "    >>> histogram('a b b a')",
                "    { 'a': 2, 'b': 2 }",
                "    >>> histogram('a b c a b')",
                "    { 'a': 2, 'b': 2 }",
                "    >>> histogram('b b b b a')",
                "    { 'b': 4 }",
                "    >>> histogram('')",
                "    {  }",
            ),
        ),
    ),
    112: (
        (
            6,
            9,
            (
                "    >>> reverse_delete('abcde', 'ae')",
                "    ('bcd', False)",
                "    >>> reverse_delete('abcdef', 'b')",
                "    ('acdef', False)",
                "    >>> reverse_delete('abcdedcba', 'ab')",
                "    ('cdedc', True)",
            ),
        ),
    ),
    113: (
        (
            7,
            10,
            (
                "    >>> odd_count(['3', '11111111'])",
                "    ['the number of odd elements 1n the str1ng 1 of the 1nput.', 'the number of odd elements 8n the str8ng 8 of the 8nput.']",
            ),
        ),
    ),
    114: (
        (
            4,
            6,
            (
                "    >>> minSubArraySum([2, 3, 4, 1, 2, 4])",
                "    1",
                "    >>> minSubArraySum([-1, -2, -3])",
                "    -6",
            ),
        ),
    ),
    115: (
        (
            1,
            1,
            (
                "    You are given a rectangular grid of wells. Each row represents a single well,",
                "    and each 1 in a row represents a single unit of water.",
                "    Each well has a corresponding bucket that can be used to extract water from it, ",
                "    and all buckets have the same capacity.",
                "    Your task is to use the buckets to empty the wells.",
                "    Output the number of times you need to lower the buckets.",
                "",
                "    Example 1:",
                "    >>> max_fill([[0, 0, 1, 0], [0, 1, 0, 0], [1, 1, 1, 1]], 1)",
                "    6",
                "",
                "    Example 2:",
                "    >>> max_fill([[0, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 1]], 2)",
                "    5",
                "    ",
                "    Example 3:",
                "    >>> max_fill([[0, 0, 0], [0, 0, 0]], 5)",
                "    0",
                "",
                "    Constraints:",
                "        * all wells have the same length",
                "        * 1 <= grid.length <= 10^2",
                "        * 1 <= grid[:,1].length <= 10^2",
                "        * grid[i][j] -> 0 | 1",
                "        * 1 <= capacity <= 10",
                "    ",
            ),
        ),
    ),
    116: (
        (
            6,
            9,
            (
                "    >>> sort_array([1, 5, 2, 3, 4])",
                "    [1, 2, 3, 4, 5]",
                "    >>> sort_array([-2, -3, -4, -5, -6])",
                "    [-6, -5, -4, -3, -2]",
                "    >>> sort_array([1, 0, 2, 3, 4])",
                "    [0, 1, 2, 3, 4]",
            ),
        ),
    ),
    117: (
        (
            6,
            11,
            (
                "    >>> select_words('Mary had a little lamb', 4)",
                "    ['little']",
                "    >>> select_words('Mary had a little lamb', 3)",
                "    ['Mary', 'lamb']",
                "    >>> select_words('simple white space', 2)",
                "    []",
                "    >>> select_words('Hello world', 4)",
                "    ['world']",
                "    >>> select_words('Uncle sam', 3)",
                "    ['Uncle']",
            ),
        ),
    ),
    118: (
        (
            9,
            13,
            (
                "    >>> get_closest_vowel('yogurt')",
                "    'u'",
                "    >>> get_closest_vowel('FULL')",
                "    'U'",
                "    >>> get_closest_vowel('quick')",
                "    ''",
                "    >>> get_closest_vowel('ab')",
                "    ''",
            ),
        ),
    ),
    119: (
        (
            11,
            13,
            (
                "    >>> match_parens(['()(', ')'])",
                "    'Yes'",
                "    >>> match_parens([')', ')'])",
                "    'No'",
            ),
        ),
    ),
    120: (
        (
            6,
            8,
            (
                "    >>> maximum([-3, -4, 5], 3)",
                "    [-4, -3, 5]",
            ),
        ),
        (
            11,
            13,
            (
                "    >>> maximum([4, -4, 4], 2)",
                "    [4, 4]",
            ),
        ),
        (
            16,
            18,
            (
                "    >>> maximum([-3, 2, 1, 2, -1, -2, 1], 1)",
                "    [2]",
            ),
        ),
    ),
    121: (
        (
            4,
            7,
            (
                "    >>> solution([5, 8, 7, 1])",
                "    12",
                "    >>> solution([3, 3, 3, 3, 3])",
                "    9",
                "    >>> solution([30, 13, 24, 321])",
                "    0",
            ),
        ),
    ),
    122: (
        (
            6,
            8,
            (
                "    >>> add_elements([111, 21, 3, 4000, 5, 6, 7, 8, 9], 4)",
                "    24",
            ),
        ),
    ),
    123: (
        (
            15,
            15,
            (
                "    >>> get_odd_collatz(5)",
                "    [1, 5]",
            ),
        ),
    ),
    124: (
        (
            8,
            10,
            (
                "    >>> valid_date('03-11-2000')",
                "    True",
            ),
        ),
        (
            11,
            12,
            (
                "    >>> valid_date('15-01-2012')",
                "    False",
            ),
        ),
        (
            13,
            14,
            (
                "    >>> valid_date('04-0-2040')",
                "    False",
            ),
        ),
        (
            15,
            16,
            (
                "    >>> valid_date('06-04-2020')",
                "    True",
            ),
        ),
        (
            17,
            18,
            (
                "    >>> valid_date('06/04/2020')",
                "    False",
            ),
        ),
    ),
    125: (
        (
            5,
            8,
            (
                "    >>> split_words('Hello world!')",
                "    ['Hello', 'world!']",
                "    >>> split_words('Hello,world!')",
                "    ['Hello', 'world!']",
                "    >>> split_words('abcdef')",
                "    3",
            ),
        ),
    ),
    126: (
        (
            6,
            14,
            (
                "    >>> is_sorted([5])",
                "    True",
                "    >>> is_sorted([1, 2, 3, 4, 5])",
                "    True",
                "    >>> is_sorted([1, 3, 2, 4, 5])",
                "    False",
                "    >>> is_sorted([1, 2, 3, 4, 5, 6])",
                "    True",
                "    >>> is_sorted([1, 2, 3, 4, 5, 6, 7])",
                "    True",
                "    >>> is_sorted([1, 3, 2, 4, 5, 6, 7])",
                "    False",
                "    >>> is_sorted([1, 2, 2, 3, 3, 4])",
                "    True",
                "    >>> is_sorted([1, 2, 2, 2, 3, 4])",
                "    False",
            ),
        ),
    ),
    127: (
        (
            15,
            18,
            (
                "    >>> intersection((1, 2), (2, 3))",
                "    'NO'",
                "    >>> intersection((-1, 1), (0, 4))",
                "    'NO'",
                "    >>> intersection((-3, -1), (-5, 5))",
                "    'YES'",
            ),
        ),
    ),
    128: (
        (
            7,
            10,
            (
                "    >>> prod_signs([1, 2, 2, -4])",
                "    9",
                "    >>> prod_signs([0, 1])",
                "    0",
                "    >>> prod_signs([])",
                "    None",
            ),
        ),
    ),
    129: (
        (
            21,
            22,
            (
                "    Examples:    ",
                "    >>> minPath([[1, 2, 3], [4, 5, 6], [7, 8, 9]], 3)",
                "    [1, 2, 1]",
            ),
        ),
        (
            23,
            28,
            (
                "    >>> minPath([[5, 9, 3], [4, 1, 6], [7, 8, 2]], 1)",
                "    [1]",
            ),
        ),
    ),
    130: (
        (
            14,
            15,
            (
                "    >>> tri(3)",
                "    [1, 3, 2, 8]",
            ),
        ),
    ),
    131: (
        (
            3,
            6,
            (
                "    >>> digits(1)",
                "    1",
                "    >>> digits(4)",
                "    0",
                "    >>> digits(235)",
                "    15",
            ),
        ),
    ),
    132: (
        (
            5,
            11,
            (
                "    >>> is_nested('[[]]')",
                "    True",
                "    >>> is_nested('[]]]]]]][[[[[]')",
                "    False",
                "    >>> is_nested('[][]')",
                "    False",
                "    >>> is_nested('[]')",
                "    False",
                "    >>> is_nested('[[][]]')",
                "    True",
                "    >>> is_nested('[[]][[')",
                "    True",
            ),
        ),
    ),
    133: (
        (
            4,
            9,
            (
                "    >>> lst([1.0, 2.0, 3.0])",
                "    14",
                "    >>> lst([1.0, 4.0, 9.0])",
                "    98",
                "    >>> lst([1.0, 3.0, 5.0, 7.0])",
                "    84",
                "    >>> lst([1.4, 4.2, 0.0])",
                "    29",
                "    >>> lst([-2.4, 1.0, 1.0])",
                "    6",
            ),
        ),
    ),
    134: (
        (
            7,
            11,
            (
                "    >>> check_if_last_char_is_a_letter('apple pie')",
                "    False",
                "    >>> check_if_last_char_is_a_letter('apple pi e')",
                "    True",
                "    >>> check_if_last_char_is_a_letter('apple pi e ')",
                "    False",
                "    >>> check_if_last_char_is_a_letter('')",
                "    False",
            ),
        ),
    ),
    135: (
        (
            6,
            8,
            (
                "    >>> can_arrange([1, 2, 4, 3, 5])",
                "    3",
                "    >>> can_arrange([1, 2, 3])",
                "    -1",
            ),
        ),
    ),
    136: (
        (
            7,
            10,
            (
                "    >>> largest_smallest_integers([2, 4, 1, 3, 5, 7])",
                "    (None, 1)",
                "    >>> largest_smallest_integers([])",
                "    (None, None)",
                "    >>> largest_smallest_integers([0])",
                "    (None, None)",
            ),
        ),
    ),
    137: (
        (
            6,
            10,
            (
                "    >>> compare_one(1, 2.5)",
                "    2.5",
                "    >>> compare_one(1, '2,3')",
                "    '2,3'",
                "    >>> compare_one('5,1', '6')",
                "    '6'",
                "    >>> compare_one('1', 1)",
                "    None",
            ),
        ),
    ),
    138: (
        (
            2,
            5,
            (
                "    >>> is_equal_to_sum_even(4)",
                "    False",
                "    >>> is_equal_to_sum_even(6)",
                "    False",
                "    >>> is_equal_to_sum_even(8)",
                "    True",
            ),
        ),
    ),
    140: (
        (
            5,
            9,
            (
                "    >>> fix_spaces(' Example')",
                "    'Example'",
                "    >>> fix_spaces(' Example 1')",
                "    'Example_1'",
                "    >>> fix_spaces(' Example 2')",
                "    '_Example_2'",
                "    >>> fix_spaces(' Example 3')",
                "    '_Example-3'",
            ),
        ),
    ),
    141: (
        (
            10,
            12,
            (
                "    >>> file_name_check('example.txt')",
                "    'Yes'",
                "    >>> file_name_check('1example.dll')",
                "    'No'",
            ),
        ),
    ),
    142: (
        (
            6,
            9,
            (
                "    >>> lst",
                "    [1, 2, 3]",
                "    >>> lst",
                "    []",
                "    >>> lst",
                "    [-1, -5, 2, -1, -5]",
            ),
        ),
    ),
    143: (
        (
            8,
            10,
            (
                "    >>> words_in_sentence('This is a test')",
                "    'is'",
            ),
        ),
        (
            12,
            15,
            (
                "    >>> words_in_sentence('lets go for swimming')",
                "    'go for'",
                "    ",
            ),
        ),
    ),
    144: (
        (
            7,
            10,
            (
                "    >>> simplify('1/5', '5/1')",
                "    True",
                "    >>> simplify('1/6', '2/1')",
                "    False",
                "    >>> simplify('7/10', '10/2')",
                "    False",
            ),
        ),
    ),
    145: (
        (
            7,
            9,
            (
                "    >>> order_by_points([1, 11, -1, -11, -12])",
                "    [-1, -11, 1, -12, 11]",
                "    >>> order_by_points([])",
                "    []",
            ),
        ),
    ),
    146: (
        (
            4,
            6,
            (
                "    >>> specialFilter([15, -73, 14, -15])",
                "    1",
                "    >>> specialFilter([33, -2, -3, 45, 21, 109])",
                "    2",
            ),
        ),
    ),
    147: (
        (
            7,
            9,
            (
                "    >>> get_max_triples(5)",
                "    1",
            ),
        ),
    ),
    148: (
        (
            11,
            14,
            (
                "    >>> bf('Jupiter', 'Neptune')",
                "    ('Saturn', 'Uranus')",
                "    >>> bf('Earth', 'Mercury')",
                "    'Venus'",
                "    >>> bf('Mercury', 'Uranus')",
                "    ('Venus', 'Earth', 'Mars', 'Jupiter', 'Saturn')",
            ),
        ),
    ),
    149: (
        (
            11,
            13,
            (
                "    >>> list_sort(['aa', 'a', 'aaa'])",
                "    ['aa']",
                "    >>> list_sort(['ab', 'a', 'aaa', 'cd'])",
                "    ['ab', 'cd']",
            ),
        ),
    ),
    150: (
        (
            4,
            6,
            (
                "    >>> x_or_y(7, 34, 12)",
                "    34",
                "    >>> x_or_y(15, 8, 5)",
                "    5",
            ),
        ),
    ),
    151: (
        (
            4,
            8,
            (
                "    >>> double_the_difference([1, 3, 2, 0])",
                "    10",
                "    >>> double_the_difference([-1, -2, 0])",
                "    0",
                "    >>> double_the_difference([9, -2])",
                "    81",
                "    >>> double_the_difference([0])",
                "    0",
            ),
        ),
    ),
    152: (
        (
            11,
            13,
            (
                "    >>> compare([1, 2, 3, 4, 5, 1], [1, 2, 3, 4, 2, -2])",
                "    [0, 0, 0, 0, 3, 3]",
                "    >>> compare([0, 5, 0, 0, 0, 4], [4, 1, 1, 0, 0, -2])",
                "    [4, 4, 1, 0, 0, 6]",
            ),
        ),
    ),
    153: (
        (
            14,
            15,
            (
                "    >>> Strongest_Extension('my_class', ['AA', 'Be', 'CC'])",
                "    'my_class.AA'",
            ),
        ),
    ),
    154: (
        (
            1,
            7,
            (
                "    >>> cycpattern_check('abcd', 'abd')",
                "    False",
                "    >>> cycpattern_check('hello', 'ell')",
                "    True",
                "    >>> cycpattern_check('whassup', 'psus')",
                "    False",
                "    >>> cycpattern_check('abab', 'baa')",
                "    True",
                "    >>> cycpattern_check('efef', 'eeff')",
                "    False",
                "    >>> cycpattern_check('himenss', 'simen')",
                "    True",
            ),
        ),
    ),
    155: (
        (
            3,
            5,
            (
                "    >>> even_odd_count(-12)",
                "    (1, 1)",
                "    >>> even_odd_count(123)",
                "    (1, 2)",
            ),
        ),
    ),
    156: (
        (
            6,
            9,
            (
                "    >>> int_to_mini_roman(19)",
                "    'xix'",
                "    >>> int_to_mini_roman(152)",
                "    'clii'",
                "    >>> int_to_mini_roman(426)",
                "    'cdxxvi'",
            ),
        ),
    ),
    157: (
        (
            6,
            8,
            (
                "    >>> right_angle_triangle(3, 4, 5)",
                "    True",
                "    >>> right_angle_triangle(1, 2, 3)",
                "    False",
            ),
        ),
    ),
    158: (
        (
            5,
            8,
            (
                "    >>> find_max(['name', 'of', 'string'])",
                "    'string'",
                "    >>> find_max(['name', 'enam', 'game'])",
                "    'enam'",
                "    >>> find_max(['aaaaaaa', 'bb', 'cc'])",
                "    'aaaaaaa'",
            ),
        ),
    ),
    159: (
        (
            8,
            12,
            (
                "    >>> eat(5, 6, 10)",
                "    [11, 4]",
                "    >>> eat(4, 8, 9)",
                "    [12, 1]",
                "    >>> eat(1, 10, 10)",
                "    [11, 0]",
                "    >>> eat(2, 11, 5)",
                "    [7, 0]",
            ),
        ),
    ),
    161: (
        (
            6,
            9,
            (
                "    >>> solve('1234')",
                "    '4321'",
                "    >>> solve('ab')",
                "    'AB'",
                "    >>> solve('#a@C')",
                "    '#A@c'",
            ),
        ),
    ),
    162: (
        (
            4,
            5,
            (
                "    >>> string_to_md5('Hello world')",
                "    '3e25960a79dbc69b674cd4ec67a72c62'",
            ),
        ),
    ),
    163: (
        (
            5,
            8,
            (
                "    >>> generate_integers(2, 8)",
                "    [2, 4, 6, 8]",
                "    >>> generate_integers(8, 2)",
                "    [2, 4, 6, 8]",
                "    >>> generate_integers(10, 14)",
                "    []",
            ),
        ),
    ),
}

# MultiPL-E's edits of HumanEval's tests: bare and tolerance asserts written as equalities,
# some cases added, dropped or given floats.
TESTS: dict[int, tuple[Edit, ...]] = {
    2: (
        (
            1,
            1,
            (
                "candidate(1.25) == 0.25",
                "candidate(123.0) == 0.0",
            ),
        ),
    ),
    4: (
        (
            0,
            0,
            (
                "candidate([1.0, 2.0]) == 0.5",
                "candidate([1.0, 2.0, 3.0, 4.0]) == 1.0",
                "candidate([1.0, 2.0, 3.0, 4.0, 5.0]) == 1.2",
            ),
        ),
    ),
    8: ((3, 3, ("candidate([3, 5, 7]) == (15, 105)",)),),
    16: ((2, 2, ("candidate('abcdecadeCADE') == 5",)),),
    25: (
        (
            3,
            3,
            (
                "candidate(57) == [3, 19]",
                "candidate(3249) == [3, 3, 19, 19]",
                "candidate(185193) == [3, 3, 3, 19, 19, 19]",
                "candidate(20577) == [3, 19, 19, 19]",
                "candidate(18) == [2, 3, 3]",
            ),
        ),
    ),
    31: (
        (
            10,
            10,
            (
                "candidate(85) == False",
                "candidate(77) == False",
                "candidate(255379) == False",
            ),
        ),
    ),
    33: (
        (
            0,
            7,
            (
                "candidate([5, 6, 3, 4, 8, 9, 2]) == [2, 6, 3, 4, 8, 9, 5]",
                "candidate([5, 8, 3, 4, 6, 9, 2]) == [2, 8, 3, 4, 6, 9, 5]",
                "candidate([5, 6, 9, 4, 8, 3, 2]) == [2, 6, 9, 4, 8, 3, 5]",
                "candidate([5, 6, 3, 4, 8, 9, 2, 1]) == [2, 6, 3, 4, 8, 9, 5, 1]",
            ),
        ),
    ),
    37: (
        (
            0,
            3,
            (
                "candidate([1, 2, 3]) == [1, 2, 3]",
                "candidate([5, 3, -5, 2, -3, 3, 9, 0, 123, 1, -10]) == [-10, 3, -5, 2, -3, 3, 5, 0, 9, 1, 123]",
                "candidate([5, 8, -12, 4, 23, 2, 3, 11, 12, -10]) == [-12, 8, 3, 4, 5, 2, 12, 11, 23, -10]",
            ),
        ),
    ),
    44: (
        (
            6,
            6,
            (
                "candidate(2, 3) == '2'",
                "candidate(3, 4) == '3'",
                "candidate(4, 5) == '4'",
                "candidate(5, 6) == '5'",
                "candidate(6, 7) == '6'",
                "candidate(7, 8) == '7'",
            ),
        ),
    ),
    52: (
        (
            0,
            0,
            (
                "candidate([1, 2, 4, 10], 100) == True",
                "candidate([1, 20, 4, 10], 5) == False",
                "candidate([1, 20, 4, 10], 21) == True",
                "candidate([1, 20, 4, 10], 22) == True",
                "candidate([1, 8, 4, 10], 11) == True",
                "candidate([1, 8, 4, 10], 10) == False",
            ),
        ),
    ),
    56: (
        (
            0,
            0,
            (
                "candidate('<>') == True",
                "candidate('<<><>>') == True",
                "candidate('<><><<><>><>') == True",
                "candidate('<><><<<><><>><>><<><><<>>>') == True",
                "candidate('<<<><>>>>') == False",
                "candidate('><<>') == False",
                "candidate('<') == False",
                "candidate('<<<<') == False",
                "candidate('>') == False",
                "candidate('<<>') == False",
                "candidate('<><><<><>><>><<>') == False",
                "candidate('<><><<><>><>>><>') == False",
            ),
        ),
    ),
    61: (
        (
            0,
            0,
            (
                "candidate('()') == True",
                "candidate('(()())') == True",
                "candidate('()()(()())()') == True",
                "candidate('()()((()()())())(()()(()))') == True",
                "candidate('((()())))') == False",
                "candidate(')(()') == False",
                "candidate('(') == False",
                "candidate('((((') == False",
                "candidate(')') == False",
                "candidate('(()') == False",
                "candidate('()()(()())())(()') == False",
                "candidate('()()(()())()))()') == False",
            ),
        ),
    ),
    72: (
        (
            0,
            0,
            (
                "candidate([3, 2, 3], 9) == True",
                "candidate([1, 2], 5) == False",
                "candidate([3], 5) == True",
                "candidate([3, 2, 3], 1) == False",
                "candidate([1, 2, 3], 6) == False",
                "candidate([5], 5) == True",
            ),
        ),
    ),
    75: (
        (
            5,
            5,
            (
                "candidate(105) == True",
                "candidate(126) == False",
                "candidate(729) == False",
                "candidate(891) == False",
                "candidate(1001) == True",
            ),
        ),
    ),
    78: ((6, 7, ()),),
    81: (
        (
            4,
            6,
            (
                "candidate([1.0, 0.3, 1.5, 2.8, 3.3]) == ['D', 'D-', 'C-', 'B', 'B+']",
                "candidate([0.0, 0.7]) == ['E', 'D-']",
            ),
        ),
    ),
    90: ((5, 5, ("candidate([1, 1]) == None",)),),
    95: ((2, 3, ("candidate({ 'p': 'pineapple', '5': 'banana', 'a': 'apple' }) == False",)),),
    108: ((6, 6, ("candidate([0, 1]) == 1",)),),
    130: (
        (
            0,
            8,
            (
                "candidate(3) == [1, 3, 2, 8]",
                "candidate(4) == [1, 3, 2, 8, 3]",
                "candidate(5) == [1, 3, 2, 8, 3, 15]",
                "candidate(6) == [1, 3, 2, 8, 3, 15, 4]",
                "candidate(7) == [1, 3, 2, 8, 3, 15, 4, 24]",
                "candidate(8) == [1, 3, 2, 8, 3, 15, 4, 24, 5]",
                "candidate(9) == [1, 3, 2, 8, 3, 15, 4, 24, 5, 35]",
                "candidate(20) == [1, 3, 2, 8, 3, 15, 4, 24, 5, 35, 6, 48, 7, 63, 8, 80, 9, 99, 10, 120, 11]",
            ),
        ),
    ),
    133: (
        (
            0,
            7,
            (
                "candidate([1.0, 2.0, 3.0]) == 14",
                "candidate([1.0, 2.0, 3.0]) == 14",
                "candidate([1.0, 3.0, 5.0, 7.0]) == 84",
                "candidate([1.4, 4.2, 0.0]) == 29",
                "candidate([-2.4, 1.0, 1.0]) == 6",
                "candidate([100.0, 1.0, 15.0, 2.0]) == 10230",
                "candidate([10000.0, 10000.0]) == 200000000",
            ),
        ),
        (
            9,
            12,
            (
                "candidate([0.0]) == 0",
                "candidate([-1.0]) == 1",
                "candidate([-1.0, 1.0, 0.0]) == 2",
            ),
        ),
    ),
    151: (
        (1, 2, ("candidate([5.0, 4.0]) == 25",)),
        (
            3,
            7,
            (
                "candidate([-10.0, -20.0, -30.0]) == 0",
                "candidate([-1.0, -2.0, 8.0]) == 0",
                "candidate([0.2, 3.0, 5.0]) == 34",
                "candidate([-9.0, -7.0, -5.0, -3.0, -1.0, 1.0, 3.0, 5.0, 7.0, 9.0]) == 165",
            ),
        ),
    ),
}


def apply(lines: Sequence[str], edits: Sequence[Edit]) -> list[str]:
    """`lines` with each ``(start, end, new)`` edit applied (positions refer to `lines`).

    >>> apply(["a", "b", "c"], [(1, 2, ("B", "B2")), (3, 3, ("d",))])
    ['a', 'B', 'B2', 'c', 'd']
    """
    out = list(lines)
    for start, end, new in sorted(edits, reverse=True):
        out[start:end] = new
    return out


def apply_list(items: Sequence[str], edits: Sequence[Edit]) -> tuple[str, ...]:
    """`apply` for a tuple of test lines."""
    return tuple(apply(items, edits))
