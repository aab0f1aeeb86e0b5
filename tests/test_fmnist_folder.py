"""experiments.fmnist_folder: a Fashion-MNIST export that data=imagefolder reads back."""

from roadmap import compose
from roadmap.training.data import SOURCES
from experiments.fmnist_folder import export


def test_export_is_an_image_folder_of_the_first_images(fashion_root, tmp_path):
    export(tmp_path / "folder", n_train=100, n_test=200, overrides=(f"data.root={fashion_root}",))
    cfg = compose(["data=imagefolder", f"data.root={tmp_path / 'folder'}", "data.num_classes=10"])
    train, test = SOURCES["imagefolder"](cfg.data)
    assert (len(train), len(test)) == (100, 200)
    source_train, _ = SOURCES["fashion_mnist"](compose([f"data.root={fashion_root}"]).data)
    labels = sorted(source_train.classes[source_train[i][1]].replace("/", "-") for i in range(100))
    assert sorted(train.classes[label] for _, label in train.samples) == labels
