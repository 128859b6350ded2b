"""The pack stage: curated shards -> token shards; and the loader that training reads them with."""
