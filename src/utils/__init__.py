"""quantized-xai: FP32 -> true INT8 / FP16 ONNX Runtime transformer classifiers,
measured for size, speed, accuracy and explanation agreement (LIME).

Modules: config, data, modeling, training, qat, onnx_export, quantize, predict,
evaluate, bench, explain, gpu_bench, report, provenance, pipeline (the study's steps).
"""
__version__ = "0.1.0"
