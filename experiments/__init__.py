"""Named studies, each reproducing its table and figures with one command: `python -m experiments STUDY`.

roadmap_fmnist: every tiny-path step on Fashion-MNIST, the embedded proxy (this 2-core CPU: 103.3 minutes measured);
roadmap_imagenet: the paper's setting, for a GPU cluster; leave_one_out / add_one_in: ConvNeXt-T with each design
change undone alone / ResNet-50 with each applied alone, generated from the step list (`experiments.ablations`).
"""
