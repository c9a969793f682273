"""The quota's unit becomes the device, (server, GPU index): each reservation names its GPUs.

Each active reservation gets its devices, and ``gpus`` becomes their number (the placement
targets that hold it get the same number), as follows:

1. Its server is gone (deregistered, so the reference was nulled): no devices. The GPUs no longer
   exist, so it holds nothing; ``gpus`` keeps the old count as history, and the row stays active
   until whoever holds it releases it, as before.
2. A placement target references it: the devices that target's placement occupies, from its
   ``rendered_config`` instance groups and the server's ``gpu_count``, as placements reserve from
   now on (quotas.instance_groups.devices_for_instance_groups). A KIND_GPU group without ``gpus``
   now takes every GPU of its server, and two versions side by side no longer count twice, so
   the count can go up or down.
3. Otherwise (a deployment's surge, or a rendered config that no longer fits the server, say one
   listing a GPU index the server does not have), or when step 2 finds no device: indexes 0 to
   min(gpus, gpu_count) - 1, the same number of GPUs as before where the server has that many.
   If the server has no GPU at all, no devices, as in 1.

A team can end up over its quota when its configs left the GPU choice to Triton on multi-GPU
servers: nothing is evicted, and reservations that add a device are refused until it is back
under (the same as after a quota is lowered). Released reservations are history and keep an
empty device list. Reversing the migration drops the field; the recomputed ``gpus`` stay.
"""
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import migrations, models

from controlplane.quotas.instance_groups import devices_for_instance_groups


def devices_from_target(target, server) -> list[int]:
    groups = (target.placement.rendered_config or {}).get("instance_group")
    try:
        return sorted(devices_for_instance_groups(groups, server_gpu_count=server.gpu_count, server_name=server.name))
    except ValidationError:
        return []


def convert_reservations(apps, schema_editor):
    Reservation = apps.get_model("quotas", "Reservation")
    PlacementTarget = apps.get_model("placements", "PlacementTarget")
    active = list(Reservation.objects.filter(released_at__isnull=True).select_related("server").order_by("id"))
    targets = {}
    for target in (
        PlacementTarget.objects.filter(reservation_id__in=[r.pk for r in active]).select_related("placement").order_by("id")
    ):
        targets.setdefault(target.reservation_id, target)
    for reservation in active:
        server = reservation.server
        if server is None or server.gpu_count == 0:
            devices = []
        else:
            target = targets.get(reservation.pk)
            devices = devices_from_target(target, server) if target is not None else []
            if not devices:
                devices = list(range(min(reservation.gpus, server.gpu_count)))
        reservation.devices = devices
        if devices:
            reservation.gpus = len(devices)
        reservation.save(update_fields=["devices", "gpus"])
        if devices:
            PlacementTarget.objects.filter(reservation_id=reservation.pk).update(gpus=len(devices))


class Migration(migrations.Migration):

    dependencies = [
        ("quotas", "0001_initial"),
        ("fleet", "0001_initial"),
        ("placements", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="reservation",
            name="devices",
            field=models.JSONField(blank=True, default=list, help_text="The GPU indexes held on the server, sorted."),
        ),
        migrations.AlterField(
            model_name="reservation",
            name="gpus",
            field=models.PositiveIntegerField(
                help_text="How many devices: len(devices).",
                validators=[MinValueValidator(1), MaxValueValidator(100000)],
            ),
        ),
        migrations.RunPython(convert_reservations, migrations.RunPython.noop),
    ]
