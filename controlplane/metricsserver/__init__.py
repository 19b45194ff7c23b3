"""kubelab's metrics server: resource metrics (``metrics.k8s.io/v1beta1``) behind the aggregation layer."""
