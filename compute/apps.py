from django.apps import AppConfig


class ComputeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "compute"

    def ready(self) -> None:
        # The marketplace may not import compute, so it announces an escrowed key with a signal and
        # compute hands the dataset's jobs already waiting for it to the escrow worker.
        from compute.kinds.he_query.key_holder import escrow_waiting_send
        from marketplace.signals import key_escrowed

        def on_key_escrowed(sender, *, dataset, **kwargs) -> None:
            escrow_waiting_send(dataset=dataset)

        key_escrowed.connect(on_key_escrowed, dispatch_uid="compute.escrow_waiting_send", weak=False)
