"""Positions keep their cost basis (bots/accounting.py): every active and closed position's figures are
recomputed from its recorded fills with the exact convention (fees in base were booked so that the P&L
differed from the account's real change; see issue 13)."""

from decimal import Decimal
from typing import Any

from django.db import migrations, models


def _trade_order(fill: Any) -> tuple:
    trade_id = fill.exchange_trade_id
    return (fill.executed_at, 0, int(trade_id), "") if trade_id.isdigit() else (fill.executed_at, 1, 0, trade_id)


def replay_fills(apps: Any, schema_editor: Any) -> None:
    from bots.accounting import PositionAccount, apply_fill

    position_model = apps.get_model("bots", "LiquidityPosition")
    fill_model = apps.get_model("bots", "Fill")
    for position in position_model.objects.all().iterator():
        fills = sorted(fill_model.objects.filter(position_id=position.pk), key=_trade_order)
        if not fills:
            continue
        base, quote = position.trading_pair.split("/")
        account = PositionAccount()
        for fill in fills:
            account = apply_fill(account, side=fill.side, price=fill.price, amount=fill.amount, fee=fill.fee,
                                 fee_currency=fill.fee_currency, base=base, quote=quote)
        position_model.objects.filter(pk=position.pk).update(
            base_position=account.base_position, cost_basis_quote=account.cost_basis_quote,
            average_cost=account.average_cost, realised_pnl_quote=account.realised_pnl_quote,
            fees_paid_quote=account.fees_paid_quote, volume_quote=account.volume_quote,
            fill_count=account.fill_count)


class Migration(migrations.Migration):

    dependencies = [
        ('bots', '0002_kill_switch_released'),
    ]

    operations = [
        migrations.AddField(
            model_name='liquidityposition',
            name='cost_basis_quote',
            field=models.DecimalField(decimal_places=12, default=Decimal('0'), help_text='What the open position cost, quote currency (negative for a short); see bots/accounting.py.', max_digits=30),
        ),
        migrations.AlterField(
            model_name='liquidityposition',
            name='average_cost',
            field=models.DecimalField(decimal_places=12, default=Decimal('0'), help_text='Average cost of the open base position, quote per base (shown only).', max_digits=30),
        ),
        migrations.AlterField(
            model_name='liquidityposition',
            name='base_position',
            field=models.DecimalField(decimal_places=12, default=Decimal('0'), help_text='Net base bought minus sold by this bot, less fees paid in base.', max_digits=30),
        ),
        migrations.RunPython(replay_fills, migrations.RunPython.noop),
    ]
