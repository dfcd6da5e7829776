"""PERL: a frozen open_clip CLIP refined by recurrent thought tokens (docs/method.md §2).

For each modality m with a projector φ_m:

    S    = B_m(x)                                  embeddings + blocks[0:J], run once per input
    h(0) = Pool_m(R_m(S))                          blocks[J:L], state at the original CLS / EOS
    z(k) = φ_m(h(k-1))                             k = 1..K
    h(k) = Pool_m(R_m([z(1), ..., z(k), S]))       thoughts prepended, readout index shifted by k
    e(k) = π_m(h(k))                               frozen head (ln_post @ proj, ln_final @ text_projection)

With several injection depths J_1 < ... < J_m (docs/method.md §2.7; one depth is the above):

    S      = embeddings + blocks[0:J_1]            run once per input
    z_i(k) = φ_i(h(k-1))                           every depth reads the same h; φ_i = φ if share_layers
    x_1    = [z_1(1..k), S]                        x_i = [z_i(1..k), blocks[J_{i-1}:J_i](x_{i-1})]
    h(k)   = Pool_m(blocks[J_m:L](x_m))            readout index shifted by m·k

Pool_m reads one row of the last block's output, so that block runs for the read-out query alone
(keys and values from every token; docs/method.md §5): exact up to float rounding. `PerlSeeds` runs
several seeds' models as one batch, each sample refined by its own seed's projectors.

The backbone is only read through its public attributes; it is never modified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from perl_pipeline.config import MODALITIES, check_perl_settings, split_depths
from perl_pipeline.models.projector import build_projector, check_init, think


class TextPrefix(NamedTuple):
    """Frozen text states after blocks[0:J], cut to max(EOS) + 1 tokens.

    states: [C, n, d_t]; eos_index: [C] position of each prompt's EOS token.
    """

    states: torch.Tensor
    eos_index: torch.Tensor

    def select(self, rows: Sequence[int]) -> TextPrefix:
        """The prefix of a subset of the prompts (rows in order)."""
        index = torch.as_tensor(list(rows), dtype=torch.long, device=self.states.device)
        return TextPrefix(self.states[index], self.eos_index[index])


def causal_mask(size: int, device: torch.device | None = None) -> torch.Tensor:
    """Additive float mask (0 on and below the diagonal, -inf above), as open_clip builds it."""
    return torch.full((size, size), float("-inf"), device=device).triu_(1)


class PERL(nn.Module):
    """A frozen CLIP whose image and text towers are refined by thought tokens.

    Args:
        clip: an open_clip `CLIP` with a `VisionTransformer` image tower and a causal text tower.
        split_layer: J, the number of frozen blocks in the base B_m (0 <= J <= L - 1), or the
            injection depths J_1 < ... < J_m (docs/method.md §2.7; [J] is J).
        steps: K, the number of refinement steps (0 gives zero-shot CLIP).
        rank: r, the projector bottleneck width.
        modalities: which towers get a projector ("image", "text", both or none).
        share_projector: one φ_m for all steps (PERL) or one per step (untied ablation).
        share_layers: one φ_m for all injection depths, or one per depth (several depths only).
        seed: seeds the projector initialisation.
        projector_init: ``default`` (PyTorch's, from the seeded generator) or ``zero_out`` (the
            same, then each projector's output layer at zero: every thought starts equal).
        last_block_readout_only: run the last block for the read-out query alone (exact up to
            rounding, docs/method.md §5); False runs it on every token, as CLIP does.
    """

    def __init__(
        self,
        clip: nn.Module,
        split_layer: int | Sequence[int] = 7,
        steps: int = 4,
        rank: int = 1,
        modalities: Sequence[str] = MODALITIES,
        share_projector: bool = True,
        share_layers: bool = True,
        seed: int = 0,
        projector_init: str = "default",
        last_block_readout_only: bool = True,
    ):
        super().__init__()
        modalities = tuple(modalities)
        _check_settings(clip, split_layer, steps, rank, modalities)
        check_init(projector_init)
        self.clip = clip.requires_grad_(False).eval()
        self.depths = split_depths(split_layer)  # J_1 < ... < J_m
        self.split_layer = self.depths[0] if len(self.depths) == 1 else self.depths
        self.steps = steps
        self.rank = rank
        self.modalities = modalities
        self.share_projector = share_projector
        self.share_layers = share_layers or len(self.depths) == 1
        self.projector_init = projector_init
        self.last_block_readout_only = last_block_readout_only

        generator = torch.Generator().manual_seed(seed)
        widths = {"image": clip.visual.transformer.width, "text": clip.transformer.width}
        untied_depths = () if self.share_layers else self.depths
        projectors = {
            m: build_projector(
                widths[m], rank, steps, share_projector, generator, projector_init, untied_depths
            )
            if m in modalities and steps > 0
            else None
            for m in MODALITIES
        }
        self.image_projector = projectors["image"]
        self.text_projector = projectors["text"]

    # -- public API -------------------------------------------------------------------------

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [K + 1, B, embed_dim] unnormalised; row 0 is zero-shot CLIP."""
        return self.refine_image(self.image_prefix(images))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """[C, context_length] token ids -> [K + 1, C, embed_dim] unnormalised; row 0 is zero-shot."""
        return self.refine_text(self.text_prefix(tokens))

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's frozen temperature τ = exp(logit_scale) (about 100 for OpenAI weights)."""
        return self.clip.logit_scale.detach().exp()

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The projector parameters: the only ones that require grad."""
        return (p for p in self.parameters() if p.requires_grad)

    def projector_state_dict(self) -> dict[str, torch.Tensor]:
        """The projectors' weights alone (a few KB), detached and on the CPU."""
        return {
            name: tensor.detach().cpu().contiguous()
            for name, tensor in self.state_dict().items()
            if not name.startswith("clip.")
        }

    def load_projector_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights saved by `projector_state_dict`; every projector key must be present."""
        own = self.projector_state_dict()
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        if missing or unexpected:
            raise KeyError(
                f"projector weights do not fit this PERL (missing {missing}, unexpected "
                f"{unexpected}); were they trained with other modalities, steps, split_layer, "
                "share_projector or share_layers settings?"
            )
        self.load_state_dict(state, strict=False)

    def train(self, mode: bool = True) -> PERL:
        """Switch the projectors' mode; the frozen backbone always stays in eval mode."""
        super().train(mode)
        self.clip.eval()
        return self

    # -- the two halves of each tower, for caching the frozen prefix -------------------------

    def image_prefix(self, images: torch.Tensor) -> torch.Tensor:
        """S_v = embeddings + blocks[0:J_1]: [B, 3, H, W] -> [B, 1 + N, d_v]."""
        visual = self.clip.visual
        x = visual.conv1(images.to(visual.conv1.weight.dtype))  # [B, d_v, grid, grid]
        x = x.flatten(2).transpose(1, 2)  # [B, N, d_v]
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)  # [B, 1 + N, d_v]
        x = visual.ln_pre(visual.patch_dropout(x))
        return _run_blocks(visual.transformer, x, stop=self.depths[0])

    def refine_image(self, prefix: torch.Tensor) -> torch.Tensor:
        """R_v with K thought steps: S_v [B, 1 + N, d_v] -> [K + 1, B, embed_dim]."""
        return self._refine("image", prefix, None, _thinker([self.image_projector], [len(prefix)]))

    def text_prefix(self, tokens: torch.Tensor, cut: bool = True) -> TextPrefix:
        """S_t = embeddings + blocks[0:J_1] for a batch of prompts; `cut` first cuts it to max(EOS) + 1
        tokens (those after EOS cannot reach EOS through the causal mask: identical, much cheaper)."""
        clip = self.clip
        eos = self.eos_index(tokens)  # [C]
        if cut:
            tokens = tokens[:, : int(eos.max()) + 1]
        n = tokens.shape[1]
        cast = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(tokens).to(cast) + clip.positional_embedding[:n].to(cast)
        x = _run_blocks(clip.transformer, x, stop=self.depths[0], mask=causal_mask(n, x.device))
        return TextPrefix(x, eos)  # [C, n, d_t], [C]

    def refine_text(self, prefix: TextPrefix) -> torch.Tensor:
        """R_t with K thought steps: S_t [C, n, d_t] -> [K + 1, C, embed_dim]."""
        states, eos = prefix
        return self._refine("text", states, eos, _thinker([self.text_projector], [len(states)]))

    # -- internals ----------------------------------------------------------------------------

    def _refine(self, modality: str, prefix, readout, thinker: Thinker | None) -> torch.Tensor:
        """The recurrence of docs/method.md §2.3 and §2.7, shared by both towers: e(0..K) [K + 1, B, D].

        `readout` [B]: each prompt's EOS position (None for the image tower: CLS); `thinker(h, k, j)`
        gives z_j(k) for depth J = j from h(k - 1) (None: no projector)."""
        causal = modality == "text"
        transformer = self.clip.transformer if causal else self.clip.visual.transformer
        if readout is None:
            readout = torch.zeros(prefix.shape[0], dtype=torch.long, device=prefix.device)  # CLS
        h = self._pool(transformer, prefix, readout, causal)  # h(0): [B, d]
        embeddings = [self._head(modality, h)]  # e(0): [B, D]
        if thinker is None:  # modality off: zero-shot embedding at every step
            return embeddings[0].expand(self.steps + 1, *embeddings[0].shape)
        thoughts: list[list[torch.Tensor]] = [[] for _ in self.depths]  # z_i(1..k) per depth
        for k in range(1, self.steps + 1):
            for z, depth in zip(thoughts, self.depths, strict=True):
                z.append(thinker(h, k, depth).to(prefix.dtype))  # z_i(k): [B, d]
            stacked = [torch.stack(z, dim=1) for z in thoughts]  # m x [B, k, d], oldest first
            h = self._pool(transformer, prefix, readout, causal, stacked)  # h(k): [B, d]
            embeddings.append(self._head(modality, h))
        return torch.stack(embeddings)  # [K + 1, B, D]

    def _head(self, modality: str, h: torch.Tensor) -> torch.Tensor:
        """π_m, the frozen head: [B, d] -> [B, embed_dim]."""
        if modality == "image":
            return self.clip.visual.ln_post(h) @ self.clip.visual.proj
        h, proj = self.clip.ln_final(h), self.clip.text_projection
        return proj(h) if isinstance(proj, nn.Linear) else h @ proj

    def _pool(self, transformer, x, readout, causal, thoughts: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """Pool(R(x)): blocks[J_1:L] on x [B, n, d], with thoughts[i] [B, k, d] prepended at the
        input of block J_i, and the state at the original position `readout` [B] -> [B, d].

        The readout moves by the number of thoughts in front; under the text tower's causal mask
        every prompt token (EOS included) sees all thoughts in front of it.
        """
        last = transformer.resblocks[-1]
        shortcut = self.last_block_readout_only and readout_block_supported(last)
        ends = [*self.depths[1:], len(transformer.resblocks) - shortcut]  # the last block: below
        for i, (start, stop) in enumerate(zip(self.depths, ends, strict=True)):
            if thoughts:
                x = torch.cat([thoughts[i], x], dim=1)  # [B, k + n, d]: new thoughts in front
                readout = readout + thoughts[i].shape[1]
            mask = causal_mask(x.shape[1], x.device) if causal else None
            x = _run_blocks(transformer, x, start=start, stop=stop, mask=mask)  # [B, n, d]
        if shortcut:
            return readout_block(last, x, readout, causal)  # [B, d]
        return x[torch.arange(x.shape[0], device=x.device), readout]  # [B, d]

    def eos_index(self, tokens: torch.Tensor) -> torch.Tensor:
        """[C, context] token ids -> [C] position of each prompt's EOS token."""
        if self.clip.text_pool_type == "eos":
            return (tokens == self.clip.text_eos_id).int().argmax(dim=-1)
        return tokens.argmax(dim=-1)  # "argmax": the EOT token has the highest id


class PerlSeeds(nn.Module):
    """Several seeds' PERL models (same CLIP, same settings) refined as one batch (docs/method.md §5).

    The frozen blocks run once on the stacked inputs, every sample thinking with its own seed's
    projector; per seed the result equals its model's `refine_image` / `refine_text` up to rounding."""

    def __init__(self, models: Sequence[PERL]):
        super().__init__()
        if not models:
            raise ValueError("PerlSeeds needs at least one model")
        lead = models[0]
        settings = lambda m: (m.depths, m.steps, m.modalities, m.share_projector, m.share_layers)  # noqa: E731
        for model in models:
            if model.clip is not lead.clip:
                raise ValueError("all seeds' models must wrap the same frozen CLIP")
            if settings(model) != settings(lead):
                raise ValueError(
                    "seeds' models differ in (J, K, modalities, shared steps, shared depths): "
                    f"{settings(model)}"
                )
        self.models = nn.ModuleList(models)

    def refine_image(self, prefixes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One S_v [B_s, 1 + N, d_v] per seed -> one [K + 1, B_s, embed_dim] per seed."""
        sizes = [prefix.shape[0] for prefix in prefixes]
        thinker = _thinker([m.image_projector for m in self.models], sizes)
        steps = self.models[0]._refine("image", torch.cat(list(prefixes)), None, thinker)  # [K + 1, ΣB_s, D]
        return list(steps.split(sizes, dim=1))

    def refine_text(self, prefixes: Sequence[TextPrefix]) -> list[torch.Tensor]:
        """One S_t [C_s, n_s, d_t] per seed -> one [K + 1, C_s, embed_dim] per seed; shorter prefixes
        are padded after their tokens, which never reach EOS through the causal mask."""
        sizes = [prefix.states.shape[0] for prefix in prefixes]
        n = max(prefix.states.shape[1] for prefix in prefixes)
        states = torch.cat([F.pad(p.states, (0, 0, 0, n - p.states.shape[1])) for p in prefixes])
        eos = torch.cat([prefix.eos_index for prefix in prefixes])  # [ΣC_s]
        thinker = _thinker([m.text_projector for m in self.models], sizes)
        steps = self.models[0]._refine("text", states, eos, thinker)  # [K + 1, ΣC_s, D]
        return list(steps.split(sizes, dim=1))


Thinker = Callable[[torch.Tensor, int, int], torch.Tensor]  # (h(k - 1) [B, d], k, J_i) -> z_i(k) [B, d]


def _thinker(projectors: Sequence[nn.Module | None], sizes: Sequence[int]) -> Thinker | None:
    """z_i(k) = φ_i(h(k - 1)) for a batch stacked from seeds (one seed: one model), each seed's
    `sizes` rows through its own projector (None when the tower has none)."""
    if projectors[0] is None:
        return None

    def thinker(h: torch.Tensor, k: int, depth: int) -> torch.Tensor:
        parts = h.split(list(sizes))  # one [B_s, d] per seed
        return torch.cat([think(p, part, k, depth) for p, part in zip(projectors, parts, strict=True)])

    return thinker


def readout_block_supported(block: nn.Module) -> bool:
    """Whether `readout_block` computes `block` exactly: open_clip's plain residual attention block."""
    from open_clip.transformer import ResidualAttentionBlock

    attn = getattr(block, "attn", None)
    return (
        type(block) is ResidualAttentionBlock
        and not hasattr(block, "ln_1_kv")
        and isinstance(attn, nn.MultiheadAttention)
        and attn.in_proj_weight is not None
        and attn.in_proj_bias is not None
    )


def readout_block(block: nn.Module, x: torch.Tensor, readout: torch.Tensor, causal: bool) -> torch.Tensor:
    """One residual attention block evaluated at a single query row per sample.

    Equals ``block(x, attn_mask)[rows, readout]`` up to float rounding: the query is the read-out
    token's, keys and values come from every token (under a causal mask only from those up to the
    read-out position), and the MLP runs on that row alone: x [B, n, d], readout [B] -> [B, d]."""
    attn = block.attn
    batch, n, width = x.shape
    heads = attn.num_heads
    rows = torch.arange(batch, device=x.device)
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)

    y = block.ln_1(x)  # [B, n, d]
    q = F.linear(y[rows, readout], w_q, b_q).view(batch, heads, 1, -1)  # [B, H, 1, d/H]
    k = F.linear(y, w_k, b_k).view(batch, n, heads, -1).transpose(1, 2)  # [B, H, n, d/H]
    v = F.linear(y, w_v, b_v).view(batch, n, heads, -1).transpose(1, 2)  # [B, H, n, d/H]
    allowed = None
    if causal:  # the read-out query sees keys 0 .. readout
        keys = torch.arange(n, device=x.device)
        allowed = (keys[None, :] <= readout[:, None])[:, None, None, :]  # [B, 1, 1, n]
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # [B, H, 1, d/H]
    a = attn.out_proj(a.reshape(batch, width))  # [B, d]

    h = x[rows, readout] + block.ls_1(a)  # [B, d]
    return h + block.ls_2(block.mlp(block.ln_2(h)))  # [B, d]


def _run_blocks(transformer: nn.Module, x: torch.Tensor, start=0, stop=None, mask=None) -> torch.Tensor:
    """Run transformer.resblocks[start:stop] on batch-first x, as open_clip's Transformer does."""
    if not transformer.batch_first:
        x = x.transpose(0, 1)
    for block in transformer.resblocks[start:stop]:
        x = block(x, attn_mask=mask)
    return x if transformer.batch_first else x.transpose(0, 1)


def _check_settings(
    clip: nn.Module, split_layer: int | Sequence[int], steps: int, rank: int, modalities: tuple[str, ...]
) -> None:
    """Raise a clear error for a backbone or a setting (config.check_perl_settings) PERL cannot use."""
    from open_clip.transformer import VisionTransformer

    visual = getattr(clip, "visual", None)
    if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
        raise TypeError(
            f"PERL needs an open_clip CLIP with a plain VisionTransformer image tower "
            f"(CLS-token pooling); got {type(visual).__name__}. Use a ViT model such as "
            "'ViT-B-16-quickgelu'."
        )
    if visual.pool_type != "tok":
        raise TypeError(f"the image tower pools with {visual.pool_type!r}; PERL reads the CLS token")
    text_parts = ("transformer", "token_embedding", "positional_embedding", "ln_final", "attn_mask")
    if any(getattr(clip, part, None) is None for part in text_parts):
        raise TypeError(
            f"PERL needs an open_clip CLIP with a causal text transformer ({', '.join(text_parts)}); "
            f"got {type(clip).__name__}"
        )
    if clip.text_pool_type not in ("argmax", "eos"):
        raise TypeError(f"the text tower pools with {clip.text_pool_type!r}; PERL reads the EOS token")
    depths = {"image": len(visual.transformer.resblocks), "text": len(clip.transformer.resblocks)}
    check_perl_settings(split_layer, steps, rank, modalities, depths, prefix="")
