"""Near-deduplication with MinHash and LSH, in StarCoder's setting (5-grams, 256 permutations,
Jaccard threshold 0.7).

A document is the set of its 5-token shingles; tokens are the runs of `[A-Za-z0-9_]` in the
code after its leading license header (`strip_leading_header`). MinHash keeps, per
permutation, the smallest permuted shingle hash; LSH cuts the signature into b bands of r
rows, and two documents that agree on a whole band become a candidate pair.
Candidates are linked into clusters, and each cluster keeps one document: the one with the
smallest `rank`. As in StarCoder, the candidates are not verified against the true Jaccard.

`minhash.py` holds the signatures and band hashes (and the `MinHash` settings), `headers.py`
the leading license header that shingling skips, `stages.py` the four stages that turn
Parquet files into clusters with bounded memory.
"""

from codekiln.curate.neardup.headers import strip_leading_header
from codekiln.curate.neardup.minhash import (
    EMPTY,
    MinHash,
    band_hashes,
    estimated_jaccard,
    minhash_signatures,
    optimal_bands,
    shingle_hashes,
)
from codekiln.curate.neardup.stages import (
    BAND_DTYPE,
    CLUSTER_DTYPE,
    PARTITION_ROWS,
    WINDOW_ROWS,
    BucketTask,
    NearDupResult,
    RankTask,
    SignatureTask,
    bucket_task,
    connected_components,
    near_duplicates,
    partition_count,
    rank_task,
    signature_task,
)

__all__ = [
    "BAND_DTYPE",
    "CLUSTER_DTYPE",
    "EMPTY",
    "PARTITION_ROWS",
    "WINDOW_ROWS",
    "BucketTask",
    "MinHash",
    "NearDupResult",
    "RankTask",
    "SignatureTask",
    "band_hashes",
    "bucket_task",
    "connected_components",
    "estimated_jaccard",
    "minhash_signatures",
    "near_duplicates",
    "optimal_bands",
    "partition_count",
    "rank_task",
    "shingle_hashes",
    "signature_task",
    "strip_leading_header",
]
