"""From run records to the paper's roadmap table and figures: `python -m analysis <run or sweep dirs...> --out DIR`."""
