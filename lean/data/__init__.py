"""FSD50K-format datasets: reading, audio decoding and caching, windowing, tf.data pipelines."""
