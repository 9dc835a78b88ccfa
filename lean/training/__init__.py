"""Training refinements shared by every model: losses, schedules, mixing, SpecAugment, SVM.

Each is a config value of `lean.config.TrainConfig`; `lean.train` composes them. Importing this
package imports nothing else: the modules load TensorFlow, Keras or scikit-learn themselves.
"""
