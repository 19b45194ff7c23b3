"""The client side of the API: REST client, watch decoding, informers, work queue, leader election."""
