"""Image codecs: learned transforms, quantisation and entropy coding into ``.aeb`` files (chapter 5.2).

- :mod:`aebook.codecs.entropy`: empirical entropy and canonical Huffman codes.
- :mod:`aebook.codecs.ans`: asymmetric numeral systems, with per-channel models.
- :mod:`aebook.codecs.bitstream`: the ``.aeb`` file format (version 1: Huffman, version 2: ANS).
- :mod:`aebook.codecs.conv`: the convolutional codec (an autoencoder trained end to end).
- :mod:`aebook.codecs.klt`: the block-KLT codec (the linear autoencoder's transform + a decoder network).
- :mod:`aebook.codecs.coding`: what every codec shares: ``compress``, ``decompress``,
  ``save_codec``, ``load_codec``, ``rate_distortion``.
- :mod:`aebook.codecs.training`: training both codecs.

JPEG, the codec they are measured against, is in :mod:`aebook.baselines`.
"""
