"""The ViTime network: a ViT-MAE built from timm ``PatchEmbed`` and ``Block``.

Parameter names match the upstream ``MaskedAutoencoderViT`` exactly, so a released checkpoint
loads strictly.  Unlike upstream we never shuffle tokens (inference uses mask ratio 0): every
block sees the tokens in natural row-major order, so captured attention needs no un-shuffling.
"""
from __future__ import annotations

import numpy as np
import torch
from timm.models.vision_transformer import Block, PatchEmbed
from torch import nn

from .budget import check_model_memory
from .config import ViTimeConfig


def sincos_pos_embed_2d(embed_dim: int, rows: int, cols: int, rope: bool = False) -> np.ndarray:
    """Fixed 2-D position table with a zero row for CLS, shape (1 + rows*cols, embed_dim).

    ``rope=False`` reproduces MAE's sin-cos table (upstream feeds the column coordinate to the
    first half of the channels); ``rope=True`` the interleaved cos/sin table upstream selects
    with its ``ROPE`` flag (still an additive table, not a rotary attention).
    """
    if rope:
        row_pos, col_pos = np.meshgrid(
            np.arange(rows, dtype=np.float32), np.arange(cols, dtype=np.float32), indexing="ij"
        )
        half = embed_dim // 2
        table = np.concatenate(
            [_interleaved_cos_sin(row_pos.reshape(-1), half), _interleaved_cos_sin(col_pos.reshape(-1), half)],
            axis=1,
        )
    else:
        col_grid, row_grid = np.meshgrid(
            np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32)
        )
        half = embed_dim // 2
        table = np.concatenate(
            [_sin_cos(col_grid.reshape(-1), half), _sin_cos(row_grid.reshape(-1), half)], axis=1
        )
    return np.concatenate([np.zeros((1, embed_dim)), table], axis=0)


def _sin_cos(pos: np.ndarray, dim: int) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.einsum("m,d->md", pos, omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def _interleaved_cos_sin(pos: np.ndarray, dim: int) -> np.ndarray:
    freqs = 10000 ** (-2 * np.arange(dim // 2) / dim)
    theta = pos.reshape(-1, 1) * freqs
    out = np.zeros((pos.shape[0], dim))
    out[:, 0::2] = np.cos(theta)
    out[:, 1::2] = np.sin(theta)
    return out


class ViTimeMAE(nn.Module):
    """Encoder-decoder ViT over the (value bins x time) image; returns per-column bin logits.

    Input: image (B, 1, h, W).  Output: logits (B, W, h), one distribution over value bins per
    image column (apply a softmax over the last axis).
    """

    def __init__(self, config: ViTimeConfig, max_memory_gb: float | None = None) -> None:
        """Build the network; a config whose estimated memory passes the limit is refused first.

        ``max_memory_gb``: the limit (default ``$ATTNVIZ_MAX_MEMORY_GB`` or 4 GB, see ``budget``).
        """
        check_model_memory(config, "model config", max_memory_gb)
        super().__init__()
        self.config = config
        c = config
        self.patch_sizeh, self.patch_sizew = c.patch_size
        self.grid_rows, self.grid_cols = c.rows, c.cols
        self.patch_embed = PatchEmbed((c.h, c.width), c.patch_size, 1, c.enc_embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.enc_embed_dim))
        n_tokens = self.patch_embed.num_patches + 1
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, c.enc_embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(c.enc_embed_dim, c.enc_num_heads, c.mlp_ratio, qkv_bias=True, norm_layer=nn.LayerNorm)
            for _ in range(c.enc_depth)
        )
        self.norm = nn.LayerNorm(c.enc_embed_dim)
        self.decoder_embed = nn.Linear(c.enc_embed_dim, c.dec_embed_dim, bias=True)
        # Unused at mask ratio 0, kept so upstream checkpoints load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.dec_embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, n_tokens, c.dec_embed_dim), requires_grad=False
        )
        self.decoder_blocks = nn.ModuleList(
            Block(c.dec_embed_dim, c.dec_num_heads, c.mlp_ratio, qkv_bias=True, norm_layer=nn.LayerNorm)
            for _ in range(c.dec_depth)
        )
        self.decoder_norm = nn.LayerNorm(c.dec_embed_dim)
        self.decoder_pred = nn.Linear(c.dec_embed_dim, self.patch_sizeh * self.patch_sizew, bias=True)
        self._init_weights()

    # ----- initialisation (upstream's recipe) ---------------------------------------------------
    def _init_weights(self) -> None:
        c = self.config
        self.pos_embed.data.copy_(
            torch.from_numpy(sincos_pos_embed_2d(c.enc_embed_dim, c.rows, c.cols, c.rope)).float()[None]
        )
        self.decoder_pos_embed.data.copy_(
            torch.from_numpy(sincos_pos_embed_2d(c.dec_embed_dim, c.rows, c.cols, c.rope)).float()[None]
        )
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    # ----- forward -------------------------------------------------------------------------------
    def forward_encoder(self, image: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(image) + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_decoder(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:, :]

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, rows*cols, ph*pw) -> (B, h, W)."""
        b = patches.shape[0]
        ph, pw = self.patch_sizeh, self.patch_sizew
        x = patches.reshape(b, self.grid_rows, self.grid_cols, ph, pw)
        x = torch.einsum("nhwpq->nhpwq", x)
        return x.reshape(b, self.grid_rows * ph, self.grid_cols * pw)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 1, h, W) -> bin logits (B, W, h)."""
        expected = (1, self.config.h, self.config.width)
        if image.dim() != 4 or tuple(image.shape[1:]) != expected:
            raise ValueError(
                f"ViTime expects an image of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                f"got {tuple(image.shape)}"
            )
        pred = self.forward_decoder(self.forward_encoder(image))
        return self.unpatchify(pred).transpose(1, 2)
