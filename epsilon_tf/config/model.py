"""The model's and the loss's settings (`ModelConfig`, `LossConfig`)."""

import dataclasses

from epsilon_tf.config.settings import (
    COUNT,
    FRACTION,
    NON_NEGATIVE,
    OFF_AT_ZERO,
    POSITIVE,
    POSITIVE_INT,
    RATE,
    SettingError,
    check_fields,
    setting,
)

TOKEN_NORMS = ("layer", "standardize", "none")
MODELS = ("epsilon", "lesa", "biam")
GFP_LINEAR = ("none", "zero", "eszsl")
# The settings of GFP alone: a GPA-only model (`branches="gpa"`) has no
# GFP, so the presets' values of these are dropped for it (their
# defaults stand).
GFP_SETTINGS = ("gfp_input", "gfp_pooled_norm", "gfp_linear",
                "gfp_linear_scale")
@dataclasses.dataclass
class ModelConfig:
    """Epsilon's architecture (docs/design.md §2). Every ablation is a field.

    `model` picks Epsilon or one of the baselines LESA and BiAM
    (BUILD_NOTES.md, "Baselines: LESA and BiAM"); the `lesa_*` and `biam_*`
    fields size the baselines, the others Epsilon.

    Args:
        model: "epsilon", "lesa" or "biam".
        feature_shape: (num_regions, channels) of the backbone features.
        token_norm: how region tokens are normalized before the
            projection: "layer" (LayerNormalization of every token on its
            own), "standardize" (`FeatureStandardization`: every channel
            standardized with fixed statistics of the training regions, so
            a region keeps its strength relative to the others) or "none".
        hidden_dim: width D of the projected tokens.
        embedding_dim: width E of the word vectors (taken from the label
            space when built through `build_epsilon`).
        num_prompts: G, the GPA group prompts.
        gpa_layers: L, Transformer encoder blocks in GPA.
        gpa_heads: attention heads in GPA.
        grouping: "tokens" (softmax over tokens) or "groups" (GroupViT).
        num_global: M, the GFP global vectors.
        gfp_blocks: residual blocks in GFP.
        gfp_input: what GFP pools: "tokens" (the projected tokens) or
            "features" (the input region features; see
            `GlobalForwardPropagation`).
        gfp_pooled_norm: standardize GFP's pooled vector with fixed
            training statistics before its projection (needs
            `gfp_input="features"`).
        gfp_linear: a linear path in GFP from the standardized pooled
            vector to the word space, added to the residual stack's
            output: "none", "zero" (starts at zero) or "eszsl" (starts at
            the closed-form ESZSL solution fitted on the training images,
            its recipe, γ and λ chosen on the validation images; the
            stack's output projection then starts at zero). Needs
            `gfp_pooled_norm`.
        gfp_linear_scale: with `gfp_linear="eszsl"`, the RMS of the
            warm-started path's kernel as a multiple of the Glorot RMS of
            its shape (0: ESZSL's own scale). With `normalize_semantic`
            GFP's output is L2-normalized before scoring, so this changes
            no score before the first step; it sets how far an optimizer
            step moves the path (see
            `GlobalForwardPropagation.warm_start_linear`).
        branches: "both", "gpa" (GPA only) or "gfp" (GFP only).
        fusion: "learned" or "fixed" fusion weight.
        fusion_init: initial (or fixed) fusion weight a.
        fusion_temperature: learn a per-branch temperature.
        token_dropout: probability of dropping a whole region token.
        dropout: dropout inside GPA and GFP.
        normalize_semantic: L2-normalize the semantic vectors before
            scoring (scores become cosines; see `score_scale`). On by
            default: unnormalized prompts fit the seen labels' directions
            and transfer worse (BUILD_NOTES.md, "Against ESZSL").
        score_scale: multiplier on the fused scores (with normalized
            vectors the scores are cosines in [-1, 1] and the hinge margin
            is 1, so the scale sets how hard the margin is).
        lesa_attentions: LESA's T shared attentions.
        lesa_conv: LESA's 2x2 convolution + batch norm + ReLU over the
            region grid before the attention (its NUS-WIDE release run).
        biam_channels: BiAM's channel width (256).
        biam_heads: heads of BiAM's region-level attention (8).
        biam_top_k: BiAM scores a label by the mean of its top-k region
            scores (6).
    """

    model: str = setting(
        "epsilon",
        "Model to train: Epsilon or the LESA (CVPR 2020) or BiAM (ICCV "
        "2021) baseline (BUILD_NOTES.md, 'Baselines: LESA and BiAM').",
        choices=MODELS,
    )
    feature_shape: tuple = (196, 512)  # the data's (`DataConfig`)
    token_norm: str = setting(
        "layer", "How region tokens are normalized before the projection.",
        choices=TOKEN_NORMS,
    )
    hidden_dim: int = setting(512, "Token width D.", check=POSITIVE_INT)
    embedding_dim: int = 300  # the label space's word vectors
    num_prompts: int = setting(7, "GPA prompts G.", check=POSITIVE_INT)
    gpa_layers: int = setting(1, "GPA encoder blocks L.", check=COUNT)
    gpa_heads: int = setting(8, "GPA attention heads.", check=POSITIVE_INT)
    grouping: str = setting(
        "tokens",
        "GPA grouping softmax over tokens or over groups (GroupViT).",
        choices=("tokens", "groups"),
    )
    num_global: int = setting(3, "GFP vectors M.", check=POSITIVE_INT)
    gfp_blocks: int = setting(2, "GFP residual blocks.", check=COUNT)
    gfp_input: str = setting(
        "tokens", "What GFP pools: the projected tokens or the input features.",
        choices=("tokens", "features"),
    )
    gfp_pooled_norm: bool = setting(
        False,
        "Standardize GFP's pooled vector with training statistics "
        "(needs --gfp_input=features).",
    )
    gfp_linear: str = setting(
        "none",
        "A linear path in GFP from the standardized pooled features to the "
        "word space, beside its residual stack: none, from zero, or "
        "warm-started from ESZSL's closed form on the training images "
        "(needs --gfp_pooled_norm).",
        choices=GFP_LINEAR,
    )
    gfp_linear_scale: float = setting(
        0.0,
        "With --gfp_linear=eszsl: RMS of the warm-started linear path, in "
        "multiples of Glorot's for its shape (0: ESZSL's own). No score "
        "changes; it sets how far an optimizer step moves the path.",
        check=NON_NEGATIVE,
    )
    branches: str = setting(
        "both", "Ablation: both branches, GPA only or GFP only.",
        choices=("both", "gpa", "gfp"),
    )
    fusion: str = setting(
        "learned", "Fusion weight mode.", choices=("learned", "fixed")
    )
    fusion_init: float = setting(0.5, "Initial fusion a.", check=FRACTION)
    fusion_temperature: bool = setting(
        False, "Learn a per-branch temperature in the fusion."
    )
    token_dropout: float = setting(0.1, "Token dropout.", check=RATE)
    dropout: float = setting(0.1, "Dropout in GPA/GFP.", check=RATE)
    normalize_semantic: bool = setting(
        True, "L2-normalize semantic vectors before scoring."
    )
    score_scale: float = setting(5.0, "Score multiplier.", check=POSITIVE)
    lesa_attentions: int = setting(
        10, "LESA: shared attentions T.", check=POSITIVE_INT
    )
    lesa_conv: bool = setting(
        True, "LESA: 2x2 convolution + batch norm over the region grid first."
    )
    biam_channels: int = setting(
        256, "BiAM: channel width.", check=POSITIVE_INT
    )
    biam_heads: int = setting(
        8, "BiAM: region-attention heads.", check=POSITIVE_INT
    )
    biam_top_k: int = setting(
        6, "BiAM: a label's score is the mean of its top-k region scores.",
        check=POSITIVE_INT,
    )

    def __post_init__(self):
        self.feature_shape = tuple(int(v) for v in self.feature_shape)
        if len(self.feature_shape) != 2 or min(self.feature_shape) < 1:
            raise SettingError(
                "`feature_shape` must be (num_regions, channels) with "
                f"positive sizes. Received: feature_shape={self.feature_shape}"
            )
        check_fields(self)
        if self.gfp_pooled_norm and self.gfp_input != "features":
            raise SettingError(
                "`gfp_pooled_norm=True` (--gfp_pooled_norm) needs "
                "`gfp_input='features'` (--gfp_input=features). "
                f"Received: --gfp_input={self.gfp_input}"
            )
        if (self.gfp_linear != "none" and self.branches != "gpa"
                and not self.gfp_pooled_norm):
            raise SettingError(
                f"--gfp_linear={self.gfp_linear} needs --gfp_pooled_norm "
                "(the linear path reads the standardized pooled vector)"
            )
        if self.hidden_dim % self.gpa_heads:
            raise SettingError(
                f"--hidden_dim ({self.hidden_dim}) must be divisible by "
                f"--gpa_heads ({self.gpa_heads})"
            )


@dataclasses.dataclass
class LossConfig:
    """The training objective (docs/design.md §2, item 6).

    Args:
        form: "hinge" (LESA/BiAM ranking loss), "smooth" (log(1+exp)) or
            "listwise" (ListNet top-one cross-entropy over each image's
            annotated labels).
        margin: hinge margin.
        diversity_weight: lambda of the prompt-diversity regularizer
            (0 disables it).
        lesa_dist_weight, lesa_global_weight, lesa_span_weight: weights of
            LESA's attention regularizers (used with `model="lesa"` only;
            `losses.ranking.lesa_regularizers`): its NUS-WIDE release
            run's 0.1, 0.001 and 0.01, the last two rescaled from LESA's
            per-batch sums to per-image means at its batch of 32 (x32 and
            x sqrt(32)). 0 disables a term.
        lesa_global_margin: margin of LESA's global-attention term.
        label_weight: weight of the per-label image ranking
            (`losses.ranking.label_ranking`, a hinge) added to the ranking
            term; hinge or listwise form; 0 disables it.
        branch_weight: weight of the same ranking objective on each
            branch's scores alone (two-branch Epsilon; deep supervision);
            0 disables it.
    """

    form: str = setting(
        "hinge", "Ranking loss: hinge (LESA/BiAM's pairwise hinge), smooth "
        "(pairwise log(1+exp)) or listwise (softmax cross-entropy over each "
        "image's annotated labels).", flag="loss",
        choices=("hinge", "smooth", "listwise"),
    )
    margin: float = setting(1.0, "Hinge margin.", check=NON_NEGATIVE)
    diversity_weight: float = setting(
        0.1, "lambda of the prompt-diversity regularizer (0: off).",
        check=NON_NEGATIVE,
    )
    lesa_dist_weight: float = setting(
        0.1,
        "LESA: weight of its attention-distribution regularizer (0: off).",
    )
    lesa_global_weight: float = setting(
        0.032,
        "LESA: weight of its global-attention regularizer, per image "
        "(0: off).",
    )
    lesa_span_weight: float = setting(
        0.0566,
        "LESA: weight of its attention-span (orthogonality) regularizer, "
        "per image (0: off).",
    )
    lesa_global_margin: float = setting(
        0.0, "LESA: margin of the global-attention regularizer."
    )
    label_weight: float = setting(
        0.0,
        "Weight of the per-label image ranking added to the ranking loss "
        "(the batch's images ranked for each label, as mAP ranks them; "
        "hinge or listwise loss; 0: off).",
        check=OFF_AT_ZERO,
    )
    branch_weight: float = setting(
        0.0,
        "Epsilon with both branches: weight of the same ranking loss on "
        "each branch's scores alone, before the fusion (deep supervision; "
        "0: off).",
        check=OFF_AT_ZERO,
    )

    def __post_init__(self):
        check_fields(self)
        if self.label_weight and self.form == "smooth":
            raise SettingError(
                "--label_weight is a hinge term; it needs --loss=hinge or "
                "--loss=listwise. "
                f"Received: --loss={self.form}"
            )
