"""The network: RoadmapNet (every design step a keyword argument), its fast path, reference weights, its cost and
the step order read from conf/step/. Imports only torch, torchvision, fvcore, yaml and roadmap.errors."""
